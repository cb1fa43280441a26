"""Issue 11: preference data in the layouts other tools write is detected without a config file and checked by row."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.datasets.conftest import jsonl
from webapp.datasets.models import Status
from webapp.datasets.services import local_normalized_files

pytestmark = pytest.mark.django_db

CANONICAL = {"prompt": [{"role": "user", "content": "Capital of France?"}], "chosen": "Paris.", "rejected": "Lyon."}


def first_row(dataset):  # type: ignore[no-untyped-def]
    files = local_normalized_files(dataset)
    rows = pq.read_table(files["train"]).to_pylist() + (
        pq.read_table(files["validation"]).to_pylist() if "validation" in files else []
    )
    return next(row for row in rows if row["prompt"][-1]["content"] == "Capital of France?")


def pairs(make, count=12):  # type: ignore[no-untyped-def]
    return [make(i) for i in range(count)]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("strings.jsonl", lambda i: {"prompt": "Capital of France?" if i == 0 else f"q{i}", "chosen": "Paris." if i == 0 else f"a{i}", "rejected": "Lyon." if i == 0 else f"b{i}"}),
        ("trl.jsonl", lambda i: {
            "prompt": [{"role": "user", "content": "Capital of France?" if i == 0 else f"q{i}"}],
            "chosen": [{"role": "assistant", "content": "Paris." if i == 0 else f"a{i}"}],
            "rejected": [{"role": "assistant", "content": "Lyon." if i == 0 else f"b{i}"}],
        }),
        ("dpo_en_demo.json", lambda i: {
            "conversations": [{"from": "human", "value": "Capital of France?" if i == 0 else f"q{i}"}],
            "chosen": {"from": "gpt", "value": "Paris." if i == 0 else f"a{i}"},
            "rejected": {"from": "gpt", "value": "Lyon." if i == 0 else f"b{i}"},
        }),
        ("openai.jsonl", lambda i: {
            "input": {"messages": [{"role": "user", "content": "Capital of France?" if i == 0 else f"q{i}"}]},
            "preferred_output": [{"role": "assistant", "content": "Paris." if i == 0 else f"a{i}"}],
            "non_preferred_output": [{"role": "assistant", "content": "Lyon." if i == 0 else f"b{i}"}],
        }),
    ],
)
def test_each_layout_becomes_the_same_canonical_pairs(check, name, make):  # type: ignore[no-untyped-def]
    rows = pairs(make)
    body = json.dumps(rows) if name.endswith(".json") else jsonl(rows)
    dataset = check(name, body)
    assert dataset.status == Status.READY, dataset.failure_reason
    assert (dataset.shape, dataset.task, dataset.rows) == ("preference", "preference", 12)
    assert first_row(dataset) == CANONICAL


def test_kto_rows_are_unpaired_preference_data(check):  # type: ignore[no-untyped-def]
    rows = [{"prompt": f"q{i}", "completion": f"a{i}", "label": ["true", "false", "yes", "no"][i % 4]} for i in range(8)]
    dataset = check("kto.jsonl", jsonl(rows))
    assert dataset.status == Status.READY, dataset.failure_reason
    assert (dataset.shape, dataset.task) == ("preference_unpaired", "preference")
    labels = pq.read_table(local_normalized_files(dataset)["train"]).column("label").to_pylist()
    assert set(labels) <= {True, False} and len(labels) >= 6


def test_bad_pairs_are_named_by_row(check):  # type: ignore[no-untyped-def]
    rows = [
        {"prompt": "q1", "chosen": "good", "rejected": "bad"},
        {"prompt": "q2", "chosen": "same", "rejected": "same"},
        {"prompt": "q3", "chosen": "", "rejected": "bad"},
        {"prompt": "", "chosen": "good", "rejected": "bad"},
    ]
    dataset = check("bad.jsonl", jsonl(rows))
    assert dataset.status == Status.INVALID
    reasons = {(error["row"], error["field"]): error["message"] for error in dataset.errors}
    assert reasons[(2, "rejected")] == "chosen and rejected are the same answer"
    assert reasons[(3, "chosen")] == "the chosen answer is empty"
    assert reasons[(4, "prompt")] == "the prompt is missing or empty"
    assert (1, "prompt") not in reasons


def test_an_unreadable_label_names_its_row(check):  # type: ignore[no-untyped-def]
    rows = [{"prompt": "q", "completion": "a", "label": "true"}, {"prompt": "q", "completion": "a", "label": "maybe"}]
    dataset = check("kto.jsonl", jsonl(rows))
    assert dataset.status == Status.INVALID
    assert dataset.failure_reason.startswith("Row 2: `label` cannot be read as a preference label")


def test_profile_warns_when_chosen_answers_are_mostly_longer(check):  # type: ignore[no-untyped-def]
    rows = [{"prompt": f"q{i}", "chosen": f"a long and careful answer number {i}", "rejected": "no"} for i in range(20)]
    dataset = check("long.jsonl", jsonl(rows))
    assert dataset.status == Status.READY, dataset.failure_reason
    bias = dataset.profile["length_bias"]
    assert bias["chosen_longer_share"] == 1.0
    assert any("longer is better" in warning for warning in dataset.profile["warnings"])
