"""POST /api/v1/jobs/: a job that can work is created and queued; one that cannot is a 400 with the reason."""

from __future__ import annotations

import pytest

from jobs.models import Job
from tests.jobs.conftest import SENTIMENT, ready_dataset

pytestmark = pytest.mark.django_db


def submit(api, **body):  # type: ignore[no-untyped-def]
    return api.post("/api/v1/jobs/", body, format="json")


def test_lora_sft_job_is_created_queued_with_resolved_hyperparameters(api_alice, tiny_lm, sft_data):
    response = submit(api_alice, base_model=str(tiny_lm.id), dataset=str(sft_data.id), method="lora")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["task"] == "sft"  # inferred from the dataset's shape
    assert body["method"] == "lora"
    assert body["progress"] == {"step": 0, "total_steps": 0, "epoch": None, "loss": None, "eta_seconds": None, "learning_rate": None}
    assert body["result_model"] is None and body["error"] is None
    job = Job.objects.get(pk=body["id"])
    assert job.hyperparameters["learning_rate"] > 0 and job.hyperparameters["lora_r"] > 0
    assert job.estimate["memory"]["total"] > 0
    assert job.task_id  # stored before the message is sent


def test_given_hyperparameters_override_the_preset(api_alice, tiny_lm, sft_data):
    response = submit(
        api_alice, base_model=str(tiny_lm.id), dataset=[str(sft_data.id)], method="lora",
        hyperparameters={"epochs": 2, "lora_r": 4, "preset": "quick"},
    )
    assert response.status_code == 201
    job = Job.objects.get(pk=response.json()["id"])
    assert job.hyperparameters["epochs"] == 2 and job.hyperparameters["lora_r"] == 4


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"method": "dance"}, "Unknown method"),
        ({"hyperparameters": {"epochz": 3}}, "Unknown hyperparameter 'epochz'"),
        ({"hyperparameters": {"learning_rate": 5}}, "learning_rate"),
        ({"task": "classification"}, "fits the sft task"),
        ({"method": "head"}, "not available for the sft task"),
        ({"method": "qlora"}, "QLoRA needs a CUDA GPU worker"),
        ({"method": "prompt_tuning"}, "prompt_init_text"),
        ({"base_model": "00000000-0000-0000-0000-000000000000"}, "base model does not exist"),
        ({"dataset": "not-a-dataset"}, "does not exist"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_combination_that_cannot_work_is_a_400_with_the_reason(api_alice, tiny_lm, sft_data, change, fragment):
    body = {"base_model": str(tiny_lm.id), "dataset": str(sft_data.id), "method": "lora", **change}
    response = api_alice.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 400
    assert fragment in response.json()["error"] + str(response.json()["details"])
    assert Job.objects.count() == 0


def test_required_fields_are_named(api_alice):
    response = api_alice.post("/api/v1/jobs/", {}, format="json")
    assert response.status_code == 400
    fields = {detail["field"] for detail in response.json()["details"]}
    assert {"base_model", "dataset", "method"} <= fields


def test_a_model_that_cannot_serve_the_task_is_refused(api_alice, tiny_lm, alice):
    sentiment = ready_dataset(alice, SENTIMENT, "sentiment")
    response = submit(api_alice, base_model=str(tiny_lm.id), dataset=str(sentiment.id), method="lora")
    assert response.status_code == 400
    assert "cannot serve the classification task" in response.json()["error"]


def test_someone_elses_dataset_is_refused_without_revealing_it(api_bob, tiny_lm, sft_data):
    response = submit(api_bob, base_model=str(tiny_lm.id), dataset=str(sft_data.id), method="lora")
    assert response.status_code == 400
    assert "not yours" in response.json()["error"]
    assert "arithmetic" not in response.content.decode()


def test_prompt_tuning_with_its_init_text_is_accepted(api_alice, tiny_lm, sft_data):
    response = submit(
        api_alice, base_model=str(tiny_lm.id), dataset=str(sft_data.id), method="prompt_tuning",
        hyperparameters={"prompt_init_text": "Answer arithmetic questions with the sum."},
    )
    assert response.status_code == 201, response.json()
