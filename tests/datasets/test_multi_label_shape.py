"""Multi-label data: `text` + `labels` is its own shape, never confused with classification's `text` + `label`;
labels come as lists or as text separated by commas or semicolons, and the profile counts rows per label."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files
from webapp.datasets.shapes import ShapeMismatch, detect_shape

pytestmark = pytest.mark.django_db

TOPICS = [["phones"], ["phones", "deals"], ["shoes"], ["shoes", "deals"], ["phones", "shoes"]]
REVIEWS = [{"text": f"review number {i}", "labels": TOPICS[i % len(TOPICS)]} for i in range(20)]


def normalized_labels(dataset) -> list[list[str]]:  # type: ignore[no-untyped-def]
    table = pq.read_table(local_normalized_files(dataset)["train"])
    assert table.schema == pa.schema([("text", pa.string()), ("labels", pa.list_(pa.string()))])
    return table.column("labels").to_pylist()


def test_text_and_labels_are_multi_label_data_and_text_and_label_stay_classification():
    shape = detect_shape(["Text", "Labels"])
    assert (shape.name, shape.task, shape.column_of) == (
        "multi_label", "multi_label_classification", {"text": "Text", "labels": "Labels"},
    )
    assert detect_shape(["text", "label"]).name == "classification"
    # Both columns: classification, unless the multi-label task is asked for.
    assert detect_shape(["text", "label", "labels"]).name == "classification"
    assert detect_shape(["text", "label", "labels"], declared_task="multi_label_classification").name == "multi_label"
    assert detect_shape(["text", "labels", "score"]).name == "multi_label"


def test_a_multi_label_task_without_labels_says_what_is_missing():
    with pytest.raises(ShapeMismatch, match="column `labels` missing: a multi label dataset needs text and labels"):
        detect_shape(["text", "label"], declared_task="multi_label_classification")


def test_json_label_lists_are_kept_as_lists(check):
    dataset = check("reviews.jsonl", jsonl(REVIEWS), validation_fraction=0)
    assert (dataset.status, dataset.shape, dataset.task, dataset.rows) == (Status.READY, "multi_label", "multi_label_classification", 20)
    assert normalized_labels(dataset)[:3] == [["phones"], ["phones", "deals"], ["shoes"]]


def test_csv_labels_separated_by_semicolons_or_commas_become_lists(check):
    csv = (
        "text,labels\n"
        '"great phone","positive;electronics"\n'
        '"bad shoes","negative, clothing"\n'
        "cheap tv, electronics \n"
        '"fine socks"," clothing ; positive "\n'
    )
    dataset = check("reviews.csv", csv, validation_fraction=0)
    assert (dataset.status, dataset.shape, dataset.detected["delimiter"]) == (Status.READY, "multi_label", "comma")
    assert normalized_labels(dataset) == [
        ["positive", "electronics"], ["negative", "clothing"], ["electronics"], ["clothing", "positive"],
    ]


def test_parquet_label_lists_and_numbers_as_labels(check):
    import io

    sink = io.BytesIO()
    pq.write_table(pa.table({"text": ["a", "b", "c"], "labels": [[1, 2], [2], [3, 1]]}), sink)
    dataset = check("ids.parquet", sink.getvalue(), validation_fraction=0)
    assert dataset.status == Status.READY, dataset.errors
    assert normalized_labels(dataset) == [["1", "2"], ["2"], ["3", "1"]]


def test_the_profile_counts_rows_per_label_and_labels_per_row(check):
    dataset = check("reviews.jsonl", jsonl(REVIEWS))
    assert dataset.status == Status.READY, dataset.failure_reason
    assert dataset.profile["labels"] == {
        "classes": 3,
        "counts": {"phones": 12, "shoes": 12, "deals": 8},
        "per_row": {"mean": 1.6, "max": 2},
    }
    assert not [warning for warning in dataset.profile["warnings"] if "label" in warning]


def test_a_label_in_fewer_than_five_rows_is_warned_about(check):
    rows = [*REVIEWS, {"text": "a rare one", "labels": ["phones", "refurbished"]}]
    dataset = check("reviews.jsonl", jsonl(rows))
    assert dataset.status == Status.READY
    assert "1 label appears in fewer than 5 rows, too few to learn from: `refurbished` (1)" in " ".join(
        dataset.profile["warnings"]
    )


def test_every_row_with_the_same_labels_is_warned_about(check):
    dataset = check("same.jsonl", jsonl([{"text": f"row {i}", "labels": ["a", "b"]} for i in range(8)]))
    assert dataset.status == Status.READY
    assert "Every row has the same labels (`a`, `b`)" in " ".join(dataset.profile["warnings"])


def test_the_dataset_page_shows_the_labels_and_labels_per_text(client_alice, check):
    dataset = check("reviews.jsonl", jsonl(REVIEWS))
    page = client_alice.get(f"/datasets/{dataset.id}/").content.decode()
    assert "3 labels; per text: 1.60 on average, at most 2" in page
    assert '<td class="bar-label">deals</td>' in page
