"""The job state machine: transitions move only from the expected states, and only one caller wins."""

from __future__ import annotations

import pytest

from jobs import services
from jobs.models import Job, Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(alice, tiny_lm, sft_data) -> Job:
    return services.create_job(services.plan_job(alice, tiny_lm.id, [sft_data.id], "lora"))


def test_only_one_worker_can_start_a_job(job):
    other = Job.objects.get(pk=job.pk)
    assert job.start("worker-a")
    assert not other.start("worker-b")
    job.refresh_from_db()
    assert job.worker == "worker-a" and job.attempt == 1 and job.status == Status.RUNNING


def test_cancel_of_a_running_job_asks_it_to_stop(job):
    job.start("worker-a")
    assert job.cancel()
    job.refresh_from_db()
    assert job.status == Status.RUNNING and job.cancel_requested
    assert job.mark_cancelled()
    assert job.status == Status.CANCELLED and job.finished_at is not None


def test_a_finished_job_cannot_be_cancelled_or_restarted(job):
    job.start("worker-a")
    job.fail("boom")
    assert not job.cancel()
    assert not job.start("worker-b")
    assert job.status == Status.FAILED and job.error == "boom"


def test_stale_running_job_is_requeued_then_resumes_as_a_new_attempt(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    job.start("worker-a")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_STALE_JOB_SECONDS + 5))
    assert [j.pk for j in services.recover_stale_jobs()] == [job.pk]
    job.refresh_from_db()
    assert job.status == Status.RETRYING
    assert job.start("worker-b") and job.attempt == 2


def test_a_job_that_keeps_losing_its_worker_fails_with_the_reason(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    Job.objects.filter(pk=job.pk).update(
        status=Status.RUNNING, attempt=settings.LAYERCAKE_MAX_ATTEMPTS, worker="w",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    services.recover_stale_jobs()
    job.refresh_from_db()
    assert job.status == Status.FAILED and job.failure_reason == "worker_lost"


def test_waiting_jobs_whose_message_may_be_lost_are_resent(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now() - timedelta(seconds=settings.LAYERCAKE_RESEND_AFTER_SECONDS + 1))
    old_task_id = job.task_id
    assert [j.pk for j in services.resend_waiting_jobs()] == [job.pk]
    job.refresh_from_db()
    assert job.task_id != old_task_id


def test_a_job_that_resumed_and_succeeded_keeps_no_old_error(job):
    job.start("worker-a")
    assert job.requeue("its worker stopped answering; resuming from the last checkpoint")
    assert job.start("worker-b")
    assert job.succeed(None, {"tuned": {}}, {})
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED and job.error == "" and job.failure_reason == ""


def test_a_worker_that_restarts_under_its_name_gives_its_running_job_back_at_once(job):
    # jobs.worker_registry.on_worker_ready calls this as soon as a worker (re)starts.
    job.start("layercake@box")
    other = services.create_job(services.plan_job(job.owner, job.base_model_id, [d.id for d in job.datasets.all()], "lora"))
    other.start("gpu@elsewhere")
    recovered = services.recover_jobs_of_restarted_worker("layercake@box")
    assert [j.pk for j in recovered] == [job.pk]
    job.refresh_from_db()
    other.refresh_from_db()
    assert job.status == Status.RETRYING and "restarted" in job.error  # its heartbeat was fresh: only the restart tells
    assert other.status == Status.RUNNING  # another worker's job is left alone
