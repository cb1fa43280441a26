"""Checkpoints of jobs that ended failed or cancelled: kept LAYERCAKE_CHECKPOINT_RETENTION_HOURS, then deleted.

Nothing resumes from them. A job re-queued after its worker died resumes from its own (it is `retrying`, not ended);
a retry of a failed or cancelled job is a new job, planned afresh (jobs.services.retry), with a checkpoint folder of
its own, so it starts from the beginning. They are kept a while for whoever looks into the failure, and count in the
owner's quota until they go. The periodic check (jobs.tasks.check_jobs) calls `delete_expired_checkpoints`.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from jobs.checkpoint_store import local_job_folder, remote_store, storage_is_remote
from jobs.models import Job, JobEvent
from webapp.accounts.quota import folder_bytes, size_text

logger = logging.getLogger(__name__)

# Jobs handled per check: after an upgrade the backlog drains over a few checks (each 5 s apart) instead of holding
# up the stale-job detection that runs in the same check.
BATCH = 20


def delete_checkpoints(job: Job) -> int:
    """Delete the job's checkpoints from this machine's disk and, with remote storage, from the bucket; the bytes freed."""
    folder = local_job_folder(job.pk, "checkpoints")
    freed = folder_bytes(folder)
    shutil.rmtree(folder, ignore_errors=True)
    if storage_is_remote():
        store = remote_store(job)
        freed += store.stored_bytes()
        store.delete_all()
    return freed


def delete_expired_checkpoints(now: datetime | None = None) -> list[Job]:
    """Delete the checkpoints of jobs that ended failed or cancelled more than the retention ago; the jobs done.

    Deleting comes first and marking after, so a check that dies half-way leaves the job to the next one; when two
    checks overlap, both delete (harmless) and only the one that marks the job writes its log line.
    """
    hours = settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS
    cutoff = (now or timezone.now()) - timedelta(hours=hours)
    done = []
    for job in Job.objects.checkpoints_expired(cutoff)[:BATCH]:
        try:
            freed = delete_checkpoints(job)
        except Exception:  # storage down: the next check tries again
            logger.exception("job %s: could not delete its checkpoints", job.pk)
            continue
        if not job.mark_checkpoints_deleted():
            continue
        logger.info(
            "job %s: %s checkpoints deleted, %d h after it ended %s", job.pk, size_text(freed), hours, job.status
        )
        if freed:
            progress = job.progress or {}
            JobEvent.objects.create(
                job=job,
                step=progress.get("step") or 0,
                total_steps=progress.get("total_steps") or 0,
                message=f"Checkpoints deleted ({size_text(freed)}): kept {hours} h after the job ended "
                "(LAYERCAKE_CHECKPOINT_RETENTION_HOURS).",
            )
        done.append(job)
    return done
