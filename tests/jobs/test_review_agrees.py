"""The review page shows the steps, rows and trainable parameters that the run then has."""

from __future__ import annotations

import re

import pyarrow.parquet as pq
import pytest

from jobs import runner, services
from webapp.catalog.templatetags.catalog_format import parameters
from webapp.datasets.services import local_normalized_files

pytestmark = pytest.mark.django_db


def review(client, base, dataset, **extra):  # type: ignore[no-untyped-def]
    data = {
        "task": "sft", "base_model": str(base.id), "datasets": [str(dataset.id)], "method": "lora", "preset": "quick",
        "action": "review", **extra,
    }
    response = client.post("/jobs/new/", data)
    assert response.status_code == 200
    return response.content.decode()


def shown(page: str, css_class: str) -> int:
    match = re.search(rf'class="{css_class}">(\d+)<', page)
    assert match, f"{css_class} is not on the review page"
    return int(match.group(1))


def test_planned_steps_rows_and_parameters_are_what_the_run_had(client_alice, alice, tiny_lm, sft_data):
    page = review(client_alice, tiny_lm, sft_data, batch_size="2")
    plan = services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora", "sft", {"preset": "quick", "batch_size": 2})
    job = services.create_job(plan, send=False)
    assert job.start("worker-test")
    runner.execute(job)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    summary = job.summary

    assert shown(page, "step-count") == plan.estimate["steps"] == summary["global_step"] == summary["planned_steps"]
    assert shown(page, "train-rows-total") == plan.estimate["train_rows"] == summary["train_rows"]
    assert plan.estimate["train_examples"] == summary["train_examples"]
    assert shown(page, "eval-rows-total") == plan.estimate["eval_rows"] == summary["eval_rows"]
    assert plan.estimate["trainable_parameters"] == summary["trainable_parameters"]
    assert plan.estimate["total_parameters"] == summary["total_parameters"]
    assert f"{parameters(summary['trainable_parameters'])} of {parameters(summary['total_parameters'])}" in page


def test_a_dataset_with_its_own_split_says_eval_fraction_does_not_apply(client_alice, tiny_lm, sft_data):
    page = review(client_alice, tiny_lm, sft_data, eval_fraction="0.3")
    assert "the dataset's own split; eval_fraction does not apply" in page
    assert "eval_fraction does not apply to arithmetic" in page  # the warning, since the user asked for one
    # The rows shown are the dataset's own split, not 30% of it.
    files = local_normalized_files(sft_data)
    assert shown(page, "validation-rows") == pq.read_metadata(files["validation"]).num_rows
    assert shown(page, "train-rows") == pq.read_metadata(files["train"]).num_rows


def test_the_review_says_how_several_processes_share_the_run(client_alice, tiny_lm, sft_data):
    assert "DDP, 2 processes" in review(client_alice, tiny_lm, sft_data, num_processes="2")
    assert "FSDP, full shard, 2 processes" in review(client_alice, tiny_lm, sft_data, method="full", num_processes="2")
    assert "processes" not in review(client_alice, tiny_lm, sft_data).split('class="muted execution"')[1].split("</p>")[0]
