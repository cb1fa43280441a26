"""Celery tasks for jobs: thin, they load rows by primary key and hand over to jobs.runner / jobs.services."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.utils import timezone

from jobs import runner, services
from jobs.models import FailureReason, Job, Status
from jobs.worker_registry import set_current_job

logger = logging.getLogger(__name__)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self: Task, job_id: str) -> None:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s: no such job; dropping the message", job_id)
        return
    worker = self.request.hostname or "unknown"
    if job.status == Status.RUNNING:
        # An earlier delivery started it. Alive elsewhere (fresh heartbeat): this copy is a duplicate.
        # Dead (stale heartbeat): take it over now rather than wait for the periodic check.
        fresh = job.heartbeat_at and job.heartbeat_at > timezone.now() - timedelta(seconds=settings.LAYERCAKE_STALE_JOB_SECONDS)
        if fresh:
            logger.info("job %s: already running on %s; duplicate delivery dropped", job_id, job.worker)
            return
        if job.attempt >= settings.LAYERCAKE_MAX_ATTEMPTS:
            job.fail(f"Its worker died {job.attempt} times (last: {job.worker}); possibly out of memory.", FailureReason.WORKER_LOST)
            return
        job.requeue(f"redelivered after worker {job.worker} died")
    if not job.start(worker):
        logger.info("job %s: not waiting (%s); nothing to do", job_id, job.status)
        return
    logger.info("job %s: started on %s, attempt %d", job_id, worker, job.attempt)
    set_current_job(worker, job)
    try:
        runner.execute(job)
    finally:
        set_current_job(worker, None)
    job.refresh_from_db()
    logger.info("job %s: %s", job_id, job.status)


@shared_task
def check_jobs() -> None:
    """Periodic (celery beat): re-queue jobs whose worker vanished, re-send waiting jobs whose message was lost."""
    recovered = services.recover_stale_jobs()
    resent = services.resend_waiting_jobs()
    if recovered or resent:
        logger.info("check_jobs: %d re-queued, %d re-sent", len(recovered), len(resent))
