"""A score that is missing, not a number, NaN or infinite is a row error that names its row."""

from __future__ import annotations

import io
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status

pytestmark = pytest.mark.django_db


def test_each_bad_score_in_a_csv_is_reported_with_its_row(check):
    scores = ["4", "", "four", "NaN", "inf", "2.5", "-Infinity", "3"]
    csv = "text,score\n" + "".join(f"review {i},{score}\n" for i, score in enumerate(scores, start=1))
    dataset = check("ratings.csv", csv)
    assert dataset.status == Status.INVALID
    assert dataset.errors == [
        {"row": 2, "field": "score", "message": "`score` is missing"},
        {"row": 3, "field": "score", "message": "`score` is not a number"},
        {"row": 4, "field": "score", "message": "`score` is not a number"},
        {"row": 5, "field": "score", "message": "`score` is infinite"},
        {"row": 7, "field": "score", "message": "`score` is infinite"},
    ]
    assert dataset.error_count == 5
    assert dataset.failure_reason.startswith("5 problems; the first: row 2: `score` is missing")


def test_json_scores_written_as_text_are_read_and_nulls_are_missing(check):
    rows = [{"text": "a", "score": "1"}, {"text": "b", "score": None}, {"text": "c", "score": "1.5"}, {"text": "d", "score": "high"}]
    dataset = check("ratings.jsonl", jsonl(rows))
    assert [(error["row"], error["message"]) for error in dataset.errors] == [
        (2, "`score` is missing"), (4, "`score` is not a number"),
    ]


def test_true_and_false_are_not_scores(check):
    dataset = check("ratings.jsonl", jsonl([{"text": "a", "score": True}, {"text": "b", "score": False}]))
    assert [(error["row"], error["message"]) for error in dataset.errors] == [
        (1, "`score` is not a number"), (2, "`score` is not a number"),
    ]


def test_parquet_nan_and_infinity_are_reported_by_row(check):
    table = pa.table({"text": ["a", "b", "c", "d"], "score": [1.0, math.nan, 2.0, -math.inf]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    dataset = check("ratings.parquet", sink.getvalue())
    assert [(error["row"], error["message"]) for error in dataset.errors] == [
        (2, "`score` is not a number"), (4, "`score` is infinite"),
    ]


def test_a_missing_text_is_still_a_text_error(check):
    dataset = check("ratings.csv", "text,score\ngood,1\n,2\n")
    assert dataset.errors == [{"row": 2, "field": "text", "message": "`text` is empty"}]


def test_a_score_column_of_lists_is_refused_as_a_whole(check):
    dataset = check("ratings.jsonl", jsonl([{"text": "a", "score": [1, 2]}, {"text": "b", "score": [3]}]))
    assert dataset.status == Status.INVALID
    assert "must hold numbers" in dataset.failure_reason
