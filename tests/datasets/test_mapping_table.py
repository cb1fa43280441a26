"""The mapping table offers the expected columns of the dataset's shape (or task); the others fold away."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import ingest_and_check
from webapp.datasets.presenting import expected_columns

pytestmark = pytest.mark.django_db


def main_and_folded(page: str) -> tuple[str, str]:
    mapping = page.split('id="column-mapping"', 1)[1].split("</fieldset>", 1)[0]
    main, _, folded = mapping.partition("mapping-others")
    return main, folded


def test_expected_columns_follow_the_shape_then_the_task():
    assert expected_columns("classification", "") == ["text", "label"]
    sft = expected_columns("", "sft")
    assert {"messages", "instruction", "input", "output"} <= set(sft) and "label" not in sft
    assert "tokens" in expected_columns("", "")


def test_a_classification_dataset_maps_only_text_and_label_up_front(client_alice, alice):
    dataset = ingest_and_check(alice, "c.csv", "text,label\na,x\nb,y\n")
    main, folded = main_and_folded(client_alice.get(f"/datasets/{dataset.id}/").content.decode())
    assert 'id="id_map_text"' in main and 'id="id_map_label"' in main
    assert 'id="id_map_instruction"' not in main and 'id="id_map_instruction"' in folded


def test_an_unknown_shape_with_a_declared_task_offers_that_tasks_columns(client_alice, alice):
    dataset = ingest_and_check(alice, "q.csv", "question,answer\nq,a\n", task="sft")
    main, _ = main_and_folded(client_alice.get(f"/datasets/{dataset.id}/").content.decode())
    assert 'id="id_map_instruction"' in main and 'id="id_map_messages"' in main
    assert 'id="id_map_label"' not in main
    assert "optional" in main.split('id="id_map_input"', 1)[0].rsplit("<tr>", 1)[1]
