"""Jobs start in submission order within their queue (higher priority first), whatever order the broker delivers in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import services
from jobs.models import Job, Priority, Status, Worker
from jobs.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def submit(alice, tiny_lm, sft_data):  # type: ignore[no-untyped-def]
    plan = services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora")

    def submit(minutes_ago: float = 0, **options) -> Job:  # type: ignore[no-untyped-def]
        job = services.create_job(plan, **options)
        Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))
        job.refresh_from_db()
        return job

    return submit


def test_a_worker_takes_the_oldest_waiting_job_of_its_queue(submit):
    at_2257, at_2259 = submit(minutes_ago=3), submit(minutes_ago=1)
    assert services.claim_next_job(at_2257.queue, "w1") == at_2257
    assert services.claim_next_job(at_2257.queue, "w2") == at_2259
    assert services.claim_next_job(at_2257.queue, "w3") is None


def test_a_retry_queues_behind_jobs_submitted_before_it(submit):
    failed = submit(minutes_ago=10)
    failed.start("w0")
    failed.fail("boom")
    queued_at_2257 = submit(minutes_ago=3)
    retried_at_2300 = services.retry(failed)
    assert services.claim_next_job(failed.queue, "w1") == queued_at_2257
    assert services.claim_next_job(failed.queue, "w1") == retried_at_2300


def test_higher_priority_first_then_submission_order(submit):
    old, urgent, low = submit(minutes_ago=5), submit(minutes_ago=1, priority=Priority.HIGH), submit(minutes_ago=9, priority=Priority.LOW)
    queue = old.queue
    assert [services.claim_next_job(queue, "w") for _ in range(3)] == [urgent, old, low]


def test_a_job_resumed_after_its_worker_died_keeps_its_place(submit, settings):
    first, second = submit(minutes_ago=5), submit(minutes_ago=1)
    first.start("w-dead")
    Job.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_STALE_JOB_SECONDS + 5))
    services.recover_stale_jobs()
    assert services.claim_next_job(first.queue, "w2") == first
    assert Job.objects.get(pk=second.pk).status == Status.QUEUED


def test_a_job_never_sent_to_a_queue_is_no_workers_to_take(submit):
    run_by_finetune = submit(minutes_ago=5, send=False)  # `manage.py finetune` runs it in its own process
    assert services.claim_next_job(run_by_finetune.queue, "w") is None


def test_a_message_for_a_newer_job_starts_the_oldest_one(submit):
    """The broker delivered the 23:00 retry's message first: the worker still runs the 22:57 job."""
    at_2257, at_2300 = submit(minutes_ago=3), submit(minutes_ago=0)
    # Make the training fail at once (its spec cannot be built): what matters is which job a worker started.
    Job.objects.filter(pk=at_2257.pk).update(hyperparameters={"not_a_hyperparameter": 1})
    run_job(str(at_2300.pk))
    at_2257.refresh_from_db()
    at_2300.refresh_from_db()
    assert at_2257.attempt == 1 and at_2257.started_at is not None and at_2257.status == Status.FAILED
    assert at_2300.status == Status.QUEUED and at_2300.attempt == 0


def test_queue_position_counts_what_is_ahead(submit, alice, bob):
    first, second, third = submit(minutes_ago=3), submit(minutes_ago=2), submit(minutes_ago=1)
    Worker.objects.create(hostname="w@box", queues=[first.queue], devices=[{"kind": "cpu", "memory_bytes": 2**34}])
    assert services.queue_position(third.queue, third).ahead == 2
    first.start("w@box")
    position = services.queue_position(third.queue, third)
    assert (position.ahead, position.running, position.workers) == (1, 1, 1)
    assert position.describe().startswith("1 job ahead of this one")
    # Without a job: what anything joining the queue now (a dataset check, say) waits behind.
    assert services.queue_position(third.queue).ahead == 2
    assert services.queue_position(second.queue, second).describe().startswith("Next in the queue")


def test_job_page_and_api_show_the_queue_position(client_alice, api_alice, submit):
    submit(minutes_ago=3), submit(minutes_ago=2)
    last = submit(minutes_ago=1)
    assert "2 jobs ahead of this one" in client_alice.get(f"/jobs/{last.id}/").content.decode()
    assert api_alice.get(f"/api/v1/jobs/{last.id}/").json()["queue_position"]["ahead"] == 2
    last.cancel()
    assert api_alice.get(f"/api/v1/jobs/{last.id}/").json()["queue_position"] is None
