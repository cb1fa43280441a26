"""merge_adapter: base -> adapter -> merged, proven by identical answers; a drifting merge is refused with evidence."""

from __future__ import annotations

import shutil

import pytest

from jobs.merging import MergeDrift, merge_adapter
from webapp.catalog import merging, registering
from webapp.catalog.models import CatalogModel, Kind
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db


def test_merged_model_is_a_full_model_under_its_adapter_with_the_proof(alices_causal_adapter, causal_base, alice):
    merged = merge_adapter(alices_causal_adapter, alice)
    assert merged.kind == Kind.MERGED and merged.owner == alice
    assert [m.id for m in merged.lineage()] == [causal_base.id, alices_causal_adapter.id, merged.id]
    assert merged.parameter_count == causal_base.parameter_count
    proof = merged.metrics["merge_proof"]
    assert proof["passed"] and proof["compared"] == "greedy generations"
    assert len(proof["prompts"]) == 3 and all(row["outputs_match"] for row in proof["prompts"])
    assert proof["max_abs_logit_diff"] < merging.LOGIT_ATOL
    assert merged.metrics["tuned"] == alices_causal_adapter.metrics["tuned"]
    names = {entry["name"] for entry in merged.files}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "merge_proof.json"} <= names
    assert not any(name.endswith((".bin", ".pt")) for name in names)


def test_merged_model_answers_like_adapter_on_base_and_unlike_the_base(alices_causal_adapter, alice):
    import torch

    from webapp.catalog import loading

    merged = merge_adapter(alices_causal_adapter, alice)
    base_dir, adapter_dir = alices_causal_adapter.parent.local_dir(), alices_causal_adapter.local_dir()
    tokenizer = loading.load_tokenizer(adapter_dir)
    inputs = tokenizer("the cat likes the book", return_tensors="pt")
    with torch.no_grad():
        adapted = loading.load_adapter_on_base(adapter_dir, base_dir)(**inputs).logits
        merged_logits = loading.load_plain(merged.local_dir())(**inputs).logits
        base_logits = loading.load_plain(base_dir)(**inputs).logits
    assert torch.allclose(adapted, merged_logits, atol=1e-4)
    assert not torch.allclose(base_logits, merged_logits, atol=1e-2)


def test_classifier_merge_compares_predicted_labels(alices_classifier_adapter, alice):
    merged = merge_adapter(alices_classifier_adapter, alice)
    proof = merged.metrics["merge_proof"]
    assert proof["passed"] and proof["compared"] == "predicted labels"
    assert merged.architecture == "BertForSequenceClassification"


def test_corrupted_adapter_merge_is_refused_with_evidence_and_nothing_registered(causal_base, causal_adapter_dir, tmp_path, alice):
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(causal_adapter_dir, tmp_path / "corrupted")
    weights = load_file(folder / "adapter_model.safetensors")
    first = sorted(weights)[0]
    weights[first][0, 0] = float("nan")
    save_file(weights, folder / "adapter_model.safetensors")
    adapter = registering.register_derived_model(folder, name="corrupt", kind="adapter", parent=causal_base, owner=alice, metrics={}, task="sft")
    with pytest.raises(MergeDrift) as raised:
        merge_adapter(adapter, alice)
    evidence = raised.value.evidence
    assert evidence["passed"] is False and not evidence["prompts"][0]["finite"]
    assert raised.value.details and "merged model was not kept" in raised.value.message
    assert not CatalogModel.objects.filter(kind=Kind.MERGED).exists()


def test_a_merge_that_drifts_is_caught_by_the_logit_comparison(alices_causal_adapter, alice, monkeypatch):
    import torch

    real_merge = merging.merge_weights

    def drifting_merge(peft_model):  # type: ignore[no-untyped-def]
        merged = real_merge(peft_model)
        with torch.no_grad():  # a merge bug: one projection scaled slightly off
            merged.model.layers[0].self_attn.v_proj.weight.mul_(1.05)
        return merged

    monkeypatch.setattr(merging, "merge_weights", drifting_merge)
    with pytest.raises(MergeDrift) as raised:
        merge_adapter(alices_causal_adapter, alice)
    rows = raised.value.evidence["prompts"]
    assert all(row["finite"] for row in rows)
    assert any(not row["logits_within_tolerance"] for row in rows)
    assert raised.value.evidence["max_abs_logit_diff"] > merging.LOGIT_ATOL
    assert not CatalogModel.objects.filter(kind=Kind.MERGED).exists()


def test_only_adapters_can_be_merged(causal_base, alice):
    with pytest.raises(LayercakeError, match="only adapters"):
        merge_adapter(causal_base, alice)
