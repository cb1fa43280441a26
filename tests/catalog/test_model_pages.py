"""The models page shows the lineage tree; a model page shows card, metrics before/after, files, proof."""

from __future__ import annotations

import re

import pytest

from jobs.merging import merge_adapter
from webapp.catalog import registering
from webapp.lib.metrics import metric_rows

pytestmark = pytest.mark.django_db


def test_tree_lists_base_then_adapter_then_merged_indented(client_alice, causal_base, alices_causal_adapter, alice):
    merged = merge_adapter(alices_causal_adapter, alice)
    page = client_alice.get("/models/").content.decode()
    depths = re.findall(r'data-model="([^"]+)" data-kind="(\w+)" data-depth="(\d)"', page)
    assert depths == [
        (causal_base.name, "base", "0"),
        (alices_causal_adapter.name, "adapter", "1"),
        (merged.name, "merged", "2"),
    ]


def test_full_fine_tune_sits_under_its_origin_marked_as_a_new_full_model(client_alice, causal_base, tiny_causal_lm_dir, alice):
    registering.register_derived_model(tiny_causal_lm_dir, name="full-ft", kind="full", parent=causal_base, owner=alice, metrics={}, task="sft")
    page = client_alice.get("/models/").content.decode()
    row = page[page.index('data-model="full-ft"'):]
    assert 'data-depth="1"' in row[:80] and "new full model" in row[:800]


def test_adapter_page_shows_card_metrics_files_and_downloads(client_alice, alices_causal_adapter):
    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert "test adapter" in page  # the model card, front matter stripped
    assert "library_name" not in page
    assert "eval_loss" in page and "6.5" in page and "5.1" in page
    assert f"/models/{alices_causal_adapter.id}/download/" in page
    assert f"/models/{alices_causal_adapter.id}/files/adapter_model.safetensors" in page
    assert "Make a full model" in page
    assert "Measure the three ways" in page


def test_merged_page_shows_the_merge_proof(client_alice, alices_causal_adapter, alice):
    merged = merge_adapter(alices_causal_adapter, alice)
    page = client_alice.get(f"/models/{merged.id}/").content.decode()
    assert "Merge proof" in page and "identical" in page
    assert "What is the capital of France?" in page
    assert "Make a full model" not in page


def test_metric_rows_read_flat_and_per_dataset_metrics():
    assert metric_rows({"base": {"acc": 0.5}, "tuned": {"acc": 0.9}}) == [
        {"dataset": "", "metric": "acc", "label": "Acc", "before": 0.5, "after": 0.9}
    ]
    nested = metric_rows({"base": {"reviews": {"f1": 0.4}}, "tuned": {"reviews": {"f1": 0.8}}})
    assert nested == [{"dataset": "reviews", "metric": "f1", "label": "Entity F1", "before": 0.4, "after": 0.8}]
