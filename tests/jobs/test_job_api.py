"""Jobs list, detail, events, cancel and retry over the API, with ownership (404 for others)."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice, tiny_lm, sft_data) -> Job:
    return services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"))


def test_list_is_newest_first_and_filters_by_status(api_alice, job, alice, tiny_lm, sft_data):
    second = services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "full"))
    second.cancel()
    ids = [entry["id"] for entry in api_alice.get("/api/v1/jobs/").json()]
    assert ids == [str(second.id), str(job.id)]
    queued = api_alice.get("/api/v1/jobs/?status=queued").json()
    assert [entry["id"] for entry in queued] == [str(job.id)]


def test_events_are_oldest_first_and_page_with_after(api_alice, job):
    for step in (1, 2, 3):
        JobEvent.objects.create(job=job, step=step, total_steps=3, loss=1.0 / step)
    events = api_alice.get(f"/api/v1/jobs/{job.id}/events/").json()
    assert [event["step"] for event in events] == [1, 2, 3]
    later = api_alice.get(f"/api/v1/jobs/{job.id}/events/?after={events[0]['id']}").json()
    assert [event["step"] for event in later] == [2, 3]


def test_cancel_of_a_queued_job_ends_it_at_once(api_alice, job):
    response = api_alice.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"


def test_retry_of_a_cancelled_job_makes_a_new_queued_attempt(api_alice, job):
    job.cancel()
    response = api_alice.post(f"/api/v1/jobs/{job.id}/retry/")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "queued" and body["retry_of"] == str(job.id) and body["id"] != str(job.id)


def test_retry_of_a_queued_job_is_refused(api_alice, job):
    response = api_alice.post(f"/api/v1/jobs/{job.id}/retry/")
    assert response.status_code == 409
    assert "Only failed or cancelled jobs" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "suffix"), [("get", ""), ("get", "events/"), ("post", "cancel/"), ("post", "retry/")]
)
def test_another_users_job_is_404_everywhere(api_charlie, job, method, suffix):
    response = getattr(api_charlie, method)(f"/api/v1/jobs/{job.id}/{suffix}")
    assert response.status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"


def test_another_users_jobs_are_not_listed(api_charlie, job):
    assert api_charlie.get("/api/v1/jobs/").json() == []


def test_list_comes_in_pages_with_a_next_link(api_alice, job, alice, tiny_lm, sft_data):
    services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "full"))
    response = api_alice.get("/api/v1/jobs/?limit=1")
    assert len(response.json()) == 1 and response["X-Total-Count"] == "2"
    assert 'rel="next"' in response["Link"] and "offset=1" in response["Link"]
    assert [e["id"] for e in api_alice.get("/api/v1/jobs/?limit=1&offset=1").json()] == [str(job.id)]


def test_cancel_of_a_finished_job_is_a_409_with_the_reason(api_alice, job):
    job.start("worker-a")
    job.fail("boom")
    response = api_alice.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert response.status_code == 409
    assert response.json() == {"error": "This job already ended (failed): there is nothing to cancel.", "details": []}
    job.refresh_from_db()
    assert job.status == "failed" and not job.cancel_requested


def test_cancel_of_a_running_job_is_accepted(api_alice, job):
    job.start("worker-a")
    response = api_alice.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert response.status_code == 202 and response.json()["status"] == "running"
