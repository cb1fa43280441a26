"""Row errors name the row and the field, list the first 50 and count them all."""

from __future__ import annotations

import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status

pytestmark = pytest.mark.django_db


def test_empty_label_is_reported_as_row_12(check):
    lines = [f"text {i},{'ab'[i % 2]}" for i in range(1, 20)]
    lines[11] = "text 12,"
    dataset = check("labels.csv", "text,label\n" + "\n".join(lines) + "\n")
    assert dataset.status == Status.INVALID
    assert dataset.errors == [{"row": 12, "field": "label", "message": "`label` is empty"}]
    assert dataset.api_errors()[1]["row"] == 12


def test_only_the_first_50_errors_are_listed_but_all_are_counted(check):
    rows = [{"text": "", "label": "a"} for _ in range(120)] + [{"text": "x", "label": "b"}]
    dataset = check("many.jsonl", jsonl(rows))
    assert dataset.error_count == 120
    assert len(dataset.errors) == 50
    assert [error["row"] for error in dataset.errors] == list(range(1, 51))
    assert "120 problems" in dataset.failure_reason


def test_errors_are_listed_in_row_order_whatever_the_check(check):
    rows = [{"text": "ok", "label": "ab"[i % 2]} for i in range(45_000)]
    for bad in (44_000, 5, 30_000):
        rows[bad - 1] = {"text": "", "label": "a"}
    dataset = check("big.jsonl", jsonl(rows))
    assert [error["row"] for error in dataset.errors] == [5, 30_000, 44_000]


def test_jsonl_broken_at_row_12_names_row_12(check):
    rows = jsonl([{"text": f"r{i}"} for i in range(11)]) + '{"text": "oops\n' + jsonl([{"text": "after"}])
    dataset = check("broken.jsonl", rows)
    assert dataset.status == Status.INVALID
    assert dataset.failure_reason.startswith("Row 12 is not valid JSONL")


def test_ragged_csv_is_invalid_with_row_number(check):
    dataset = check("ragged.csv", "text,label\na,x\nb,y\nc,y,extra\nd,x\n")
    assert dataset.status == Status.INVALID
    assert dataset.errors[0]["row"] == 3
    assert "expected 2 fields, found 3" in dataset.errors[0]["message"]


def test_chat_errors_name_the_message(check):
    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}, {"role": "assistant", "content": "c"}]},
    ]
    dataset = check("chat.jsonl", jsonl(rows))
    assert dataset.errors == [
        {"row": 2, "field": "messages", "message": "message 2 has role `robot`; roles are system, user, assistant, tool"}
    ]


def test_an_8_mb_field_is_refused_and_the_stored_preview_is_clipped(check):
    dataset = check("huge.csv", "text,label\n" + "x" * (8 * 1024 * 1024) + ",a\nsmall,b\n")
    assert dataset.errors == [{"row": 1, "field": "text", "message": "`text` is 8.0 MB; the limit is 1.0 MB per field"}]
    assert len(dataset.preview[0]["row"]["text"]) <= 4001


def test_a_lone_assistant_turn_is_an_error(check):
    rows = [
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
        {"messages": [{"role": "assistant", "content": "hello"}]},
    ]
    dataset = check("chat.jsonl", jsonl(rows))
    assert dataset.errors == [{"row": 2, "field": "messages", "message": "`messages` needs a turn before the assistant's answer"}]
