"""POST /api/v1/models/{id}/merge/ and the "Make a full model" button start a merge job; bases are refused."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr("jobs.services.enqueue", lambda job: None)


def test_merge_on_an_adapter_answers_202_with_a_merge_job(api_alice, alices_causal_adapter):
    from jobs.models import Job

    response = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/merge/")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued" and body["method"] == "merge"
    job = Job.objects.get(pk=body["id"])
    assert job.owner.username == "alice" and job.base_model_id == alices_causal_adapter.id


def test_merge_on_a_base_is_a_400_with_a_reason(api_alice, causal_base):
    response = api_alice.post(f"/api/v1/models/{causal_base.id}/merge/")
    assert response.status_code == 400
    assert "adapter" in response.json()["error"]


def test_make_a_full_model_button_starts_the_job(client_alice, alices_causal_adapter):
    from jobs.models import Job

    page = client_alice.get(f"/models/{alices_causal_adapter.id}/").content.decode()
    assert "Make a full model" in page
    response = client_alice.post(f"/models/{alices_causal_adapter.id}/merge/")
    assert response.status_code == 302
    assert Job.objects.filter(base_model=alices_causal_adapter, method="merge").count() == 1
