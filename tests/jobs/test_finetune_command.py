"""`manage.py finetune` trains through the worker's code path and registers the result."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from jobs.models import Job

pytestmark = pytest.mark.django_db


def test_finetune_trains_and_registers_an_adapter(alice, tiny_bert, sentiment_data):
    out = StringIO()
    call_command(
        "finetune", "--user", "alice", "--model", str(tiny_bert.id), "--dataset", str(sentiment_data.id),
        "--method", "lora", "--hyperparameters", json.dumps({"epochs": 1}), stdout=out,
    )
    job = Job.objects.get()
    assert job.status == "succeeded" and job.result_model.parent_id == tiny_bert.id
    assert job.result_model.kind == "adapter"
    assert "accuracy" in json.dumps(job.metrics)
    assert f"Result: {job.result_model.name}" in out.getvalue()


def test_finetune_refuses_what_the_api_refuses(alice, tiny_bert, sentiment_data):
    with pytest.raises(CommandError, match="prompt_tuning method cannot run here: not available for the classification task"):
        call_command("finetune", "--user", "alice", "--model", str(tiny_bert.id), "--dataset", str(sentiment_data.id), "--method", "prompt_tuning")
    assert Job.objects.count() == 0
