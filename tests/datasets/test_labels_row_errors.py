"""Multi-label rows that cannot train name their row: missing or empty text, no labels, an empty label, a label list
too big; a file with fewer than two distinct labels is refused as a whole."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.kinds.checks import MAX_FIELD_BYTES
from webapp.datasets.models import Status

pytestmark = pytest.mark.django_db


def test_each_bad_row_in_json_lines_is_reported_with_its_row(check):
    rows = [
        {"text": "fine", "labels": ["a", "b"]},
        {"text": "", "labels": ["a"]},
        {"text": None, "labels": ["b"]},
        {"text": "no labels", "labels": []},
        {"text": "missing labels", "labels": None},
        {"text": "an empty one", "labels": ["a", " "]},
        {"text": "fine again", "labels": ["b"]},
    ]
    dataset = check("topics.jsonl", jsonl(rows))
    assert dataset.status == Status.INVALID
    assert dataset.errors == [
        {"row": 2, "field": "text", "message": "`text` is empty"},
        {"row": 3, "field": "text", "message": "`text` is missing"},
        {"row": 4, "field": "labels", "message": "`labels` holds no label"},
        {"row": 5, "field": "labels", "message": "`labels` is missing"},
        {"row": 6, "field": "labels", "message": "a label in `labels` is empty"},
    ]
    assert dataset.failure_reason.startswith("5 problems; the first: row 2: `text` is empty")


def test_csv_rows_without_labels_or_with_an_empty_one_are_reported(check):
    csv = 'text,labels\ngood,"a;b"\nnone at all,\nblank, \ndoubled,"a;;b"\ntrailing,"b,"\n'
    dataset = check("topics.csv", csv)
    # A CSV's empty cell is empty text, not a missing value: no labels either way.
    assert [(error["row"], error["message"]) for error in dataset.errors] == [
        (2, "`labels` holds no label"),
        (3, "`labels` holds no label"),
        (4, "a label in `labels` is empty"),
        (5, "a label in `labels` is empty"),
    ]


def test_a_label_list_over_the_field_limit_is_reported(check):
    huge = ["x" * 1000 + str(i) for i in range(MAX_FIELD_BYTES // 1000 + 1)]
    dataset = check("topics.jsonl", jsonl([{"text": "ok", "labels": ["a", "b"]}, {"text": "too many", "labels": huge}]))
    assert dataset.status == Status.INVALID
    assert [(error["row"], error["field"]) for error in dataset.errors] == [(2, "labels")]
    assert "the limit is 1.0 MB per field" in dataset.errors[0]["message"]


def test_fewer_than_two_distinct_labels_is_an_error_of_the_whole_file(check):
    dataset = check("topics.jsonl", jsonl([{"text": f"row {i}", "labels": ["only"]} for i in range(6)]))
    assert dataset.status == Status.INVALID
    assert dataset.errors == [
        {
            "row": None,
            "field": "labels",
            "message": "multi-label classification needs at least two distinct labels in `labels`; every row has `only`",
        }
    ]


def test_a_labels_column_of_objects_is_refused_as_a_whole(check):
    dataset = check("topics.jsonl", jsonl([{"text": "a", "labels": {"x": 1}}, {"text": "b", "labels": {"y": 2}}]))
    assert dataset.status == Status.INVALID
    assert "must hold text" in dataset.failure_reason
