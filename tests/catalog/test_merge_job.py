"""POST merge -> a `merge` job on a real worker -> a proven `merged` model that the job and the API point to."""

from __future__ import annotations

import pytest

from tests.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_merge_request_is_carried_out_by_a_worker_and_linked_to_its_job(api_alice, alices_causal_adapter, causal_base, start_worker):
    from jobs.models import Job

    start_worker(queues="cpu", extra_env={"LAYERCAKE_PROFILE_DERIVED_MODELS": "0"})
    job_id = api_alice.post(f"/api/v1/models/{alices_causal_adapter.id}/merge/").json()["id"]
    wait_for(lambda: Job.objects.get(pk=job_id).is_final, timeout=120, message="the merge job never finished")
    job = api_alice.get(f"/api/v1/jobs/{job_id}/").json()
    assert job["status"] == "succeeded", job["error"]
    merged = api_alice.get(f"/api/v1/models/{job['result_model']}/").json()
    assert merged["kind"] == "merged" and merged["job"] == job_id
    assert merged["lineage"] == [str(causal_base.id), str(alices_causal_adapter.id), merged["id"]]
    assert merged["metrics"]["merge_proof"]["passed"] is True
