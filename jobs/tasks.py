"""Celery tasks for jobs: thin, they load rows by primary key and hand over to jobs.runner / jobs.services."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from jobs import retention, runner, services
from jobs.models import FailureReason, Job, Status
from jobs.worker_registry import set_current_job
from webapp.catalog.deployment import recover_stuck_profiles
from webapp.datasets.services import recover_stuck_checks
from webapp.playground.services import recover_stuck_runs

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Task, job_id: str) -> None:
    """A message for `job_id` means "a job waits in its queue": the worker takes that queue's first job."""
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s: no such job; dropping the message", job_id)
        return
    worker = self.request.hostname or "unknown"
    fresh = job.heartbeat_at and job.heartbeat_at > timezone.now() - timedelta(seconds=settings.LAYERCAKE_STALE_JOB_SECONDS)
    if job.status == Status.RUNNING and not fresh:
        # An earlier delivery started it and its worker died: back in the queue now rather than at the
        # periodic check. (Running elsewhere with a fresh heartbeat, this message may still start the next job.)
        if job.attempt >= settings.LAYERCAKE_MAX_ATTEMPTS:
            job.fail(f"Its worker died {job.attempt} times (last: {job.worker}); possibly out of memory.", FailureReason.WORKER_LOST)
        else:
            job.requeue(f"redelivered after worker {job.worker} died")
    taken = services.claim_next_job(job.queue, worker)
    if taken is None:
        logger.info("job %s: %s; nothing waits in the %s queue", job_id, job.status, job.queue)
        return
    if taken.pk != job.pk:
        logger.info("job %s: message taken for job %s, first in the %s queue", job_id, taken.pk, job.queue)
    logger.info("job %s: started on %s, attempt %d", taken.pk, worker, taken.attempt)
    set_current_job(worker, taken)
    try:
        runner.execute(taken)
    finally:
        set_current_job(worker, None)
    taken.refresh_from_db()
    logger.info("job %s: %s", taken.pk, taken.status)


@shared_task
def check_jobs() -> None:
    """Periodic (celery beat): the database is the source of truth for all background work.

    Re-queue jobs whose worker vanished and re-send waiting jobs whose message was lost; likewise dataset
    checks, playground runs and deployment profiles, each recovered by its own app's services. Then delete the
    checkpoints that failed and cancelled jobs kept past their retention.
    """
    recovered = services.recover_stale_jobs()
    resent = services.resend_waiting_jobs()
    if recovered or resent:
        logger.info("check_jobs: %d re-queued, %d re-sent", len(recovered), len(resent))
    handled: dict[str, list[Any]] = {
        "recover_stuck_checks": recover_stuck_checks(),
        "recover_stuck_runs": recover_stuck_runs(),
        # The catalog does not know the workers: a queued profile waits while one of its queue is online.
        "recover_stuck_profiles": recover_stuck_profiles(services.online_queues()),
        "delete_expired_checkpoints": retention.delete_expired_checkpoints(),
    }
    for recover, found in handled.items():
        if found:
            logger.info("check_jobs: %s handled %d", recover, len(found))
