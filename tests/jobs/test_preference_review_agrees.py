"""The review of a preference job shows the pairs and steps its run trains, and what max_length leaves out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from jobs import services
from tests.jobs.conftest import jsonl, run_here
from webapp.datasets import services as datasets
from webapp.datasets.models import Dataset
from webapp.lib.errors import LayercakeError

pytestmark = pytest.mark.django_db

WORDS = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple", "river", "house"]
# At max_length 32 on the tiny model's ChatML template a long prompt leaves no room for an answer token.
LONG = " the river runs by the house" * 3


def pairs(words: list[str], long: bool = False) -> list[dict[str, Any]]:
    return [
        {"prompt": f"Say {word}.{LONG if long else ''}", "chosen": f"{word} {word}", "rejected": "I will not."}
        for word in words
    ]


def uploaded(owner: Any, train: list[dict[str, Any]], validation: list[dict[str, Any]]) -> Dataset:
    dataset = datasets.ingest(
        SimpleUploadedFile("pairs.jsonl", jsonl(train)), owner, name="pairs",
        validation_upload=SimpleUploadedFile("held-out.jsonl", jsonl(validation)),
    )
    dataset = datasets.check_dataset(dataset)
    assert dataset.status == "ready", dataset.api_errors()
    return dataset


def planned(owner: Any, model: Any, dataset: Dataset) -> services.JobPlan:
    return services.plan_job(
        owner, model.id, [dataset.id], "lora", "preference",
        {"preset": "quick", "objective": "dpo", "max_length": 32, "batch_size": 4},
    )


def test_planned_pairs_and_steps_are_what_a_run_with_long_prompts_trains(client_alice, alice, tiny_lm):
    train = pairs(WORDS * 2) + pairs(WORDS[:8], long=True)
    dataset = uploaded(alice, train, pairs(["pear", "plum", "lime"]) + pairs(["fig"], long=True))
    plan = planned(alice, tiny_lm, dataset)
    assert (plan.estimate["train_rows"], plan.estimate["train_examples"]) == (32, 24)
    assert any("8 of 32 training pairs" in warning for warning in plan.warnings), plan.warnings
    page = client_alice.post("/jobs/new/", {
        "task": "preference", "base_model": str(tiny_lm.id), "datasets": [str(dataset.id)], "method": "lora",
        "preset": "quick", "objective": "dpo", "max_length": "32", "batch_size": "4", "action": "review",
    }).content.decode()
    assert "8 of 32 training pairs" in page
    steps = re.search(r'class="step-count">(\d+)<', page)
    assert steps and int(steps.group(1)) == plan.estimate["steps"]

    job = run_here(plan)
    summary = job.summary
    assert plan.estimate["steps"] == summary["global_step"] == summary["planned_steps"]
    assert plan.estimate["train_rows"] == summary["train_rows"]
    assert plan.estimate["train_examples"] == summary["train_examples"]
    assert job.metrics["tuned"]["pairs"]["pairs_scored"] == 3


def test_a_held_out_split_of_only_long_prompts_is_refused_with_what_to_change(alice, tiny_lm):
    dataset = uploaded(alice, pairs(WORDS * 2), pairs(["pear", "plum"], long=True))
    with pytest.raises(LayercakeError, match=r"2 of 2 held-out pairs .* raise max_length to at least \d+"):
        planned(alice, tiny_lm, dataset)
