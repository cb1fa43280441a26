"""End to end with a real Celery worker and broker: an API upload is checked in the background."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for
from tests.datasets.conftest import jsonl, upload
from webapp.datasets.models import Dataset

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_uploaded_dataset_is_checked_by_a_worker_and_becomes_ready(celery_worker, api_alice):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(20)]
    response = api_alice.post("/api/v1/datasets/", {"file": upload("chat.jsonl", jsonl(rows))}, format="multipart")
    assert response.status_code == 201
    dataset_id = response.json()["id"]
    wait_for(
        lambda: api_alice.get(f"/api/v1/datasets/{dataset_id}/").json()["status"] in ("ready", "invalid"),
        timeout=90,
        message=f"the worker did not check the dataset:\n{celery_worker.output()[-3000:]}",
    )
    body = api_alice.get(f"/api/v1/datasets/{dataset_id}/").json()
    assert (body["status"], body["task"], body["rows"]) == ("ready", "sft", 20)
    assert Dataset.objects.get(pk=dataset_id).task_id
    assert "check_dataset" in celery_worker.output()


def test_hostile_upload_ends_invalid_through_the_worker_and_the_worker_keeps_serving(celery_worker, api_alice):
    deep = b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    first = api_alice.post("/api/v1/datasets/", {"file": upload("deep.jsonl", deep)}, format="multipart").json()["id"]
    second = api_alice.post("/api/v1/datasets/", {"file": upload("ok.txt", "fine\n")}, format="multipart").json()["id"]
    wait_for(
        lambda: Dataset.objects.filter(pk__in=[first, second], status__in=["ready", "invalid"]).count() == 2,
        timeout=90,
        message=f"the worker did not check both datasets:\n{celery_worker.output()[-3000:]}",
    )
    assert Dataset.objects.get(pk=first).status == "invalid"
    assert Dataset.objects.get(pk=second).status == "ready"
