"""Checkpoints of jobs that ended failed or cancelled are kept LAYERCAKE_CHECKPOINT_RETENTION_HOURS, then the periodic
check deletes them, on disk and in the bucket, with a line in the job's log; nothing resumes from them meanwhile."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from jobs import runner, tasks
from jobs.checkpoint_store import CheckpointStore, remote_store, storage_is_remote
from jobs.models import Job, Kind, Status
from webapp.accounts import quota
from webapp.lib.storage import stored_names

pytestmark = pytest.mark.django_db

CHECKPOINT_FILES = {"adapter_model.safetensors": 1024 * 1024, "optimizer.pt": 512 * 1024, "trainer_state.json": 48}  # 1.5 MB


@pytest.fixture
def remote(s3_storage: None) -> None:
    """Storage is a fresh S3 bucket (tests/conftest.py)."""
    assert storage_is_remote()


def ended_job(owner: Any, status: str, hours_ago: float = 0.0, kind: str = Kind.TRAIN) -> Job:
    """A job that ran on a worker and ended `hours_ago`, through the model's own transitions."""
    job = Job.objects.create(owner=owner, kind=kind, method="lora", task="sft", queue="gpu")
    assert job.start("gpu@test")
    if status == Status.FAILED:
        assert job.fail("CUDA error: an illegal memory access was encountered")
    elif status == Status.CANCELLED:
        assert job.cancel() and job.mark_cancelled()
    elif status == Status.SUCCEEDED:
        assert job.succeed(None, {}, {})
    if status != Status.RUNNING:
        Job.objects.filter(pk=job.pk).update(finished_at=timezone.now() - timedelta(hours=hours_ago))
    job.refresh_from_db()
    return job


def store_checkpoint(job: Job, step: int = 4) -> int:
    """Trainer's files of one checkpoint under the job's checkpoint folder in storage; their bytes."""
    for name, size in CHECKPOINT_FILES.items():
        default_storage.save(f"jobs/{job.pk}/checkpoints/checkpoint-{step}/{name}", ContentFile(b"c" * size))
    return sum(CHECKPOINT_FILES.values())


def worker_copy(job: Job) -> Path:
    """A worker's own copy of the checkpoints on its disk (with remote storage: runner.job_folder's place)."""
    folder = django_settings.LAYERCAKE_HOME / "jobs" / str(job.pk) / "checkpoints" / "checkpoint-4"
    folder.mkdir(parents=True)
    (folder / "optimizer.pt").write_bytes(b"o" * 500)
    return folder.parent


def local_checkpoints(job: Job) -> Path:
    return Path(default_storage.path(f"jobs/{job.pk}/checkpoints"))


def log_of(job: Job) -> list[str]:
    return list(job.events.order_by("id").values_list("message", flat=True))


def test_failed_and_cancelled_jobs_keep_their_checkpoints_within_the_retention_window(alice, settings):
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 72
    failed, cancelled = ended_job(alice, Status.FAILED, hours_ago=71), ended_job(alice, Status.CANCELLED, hours_ago=1)
    stored = store_checkpoint(failed) + store_checkpoint(cancelled)
    tasks.check_jobs()
    assert local_checkpoints(failed).exists() and local_checkpoints(cancelled).exists()
    assert quota.usage_of(alice).checkpoints == stored
    assert Job.objects.filter(checkpoints_deleted_at__isnull=False).count() == 0


def test_after_the_retention_window_the_check_deletes_them_and_says_so_in_the_jobs_log(alice, settings):
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 72
    failed, cancelled = ended_job(alice, Status.FAILED, hours_ago=73), ended_job(alice, Status.CANCELLED, hours_ago=100)
    running = ended_job(alice, Status.RUNNING)
    for job in (failed, cancelled, running):
        store_checkpoint(job)
    tasks.check_jobs()
    assert not local_checkpoints(failed).exists() and not local_checkpoints(cancelled).exists()
    assert local_checkpoints(running).exists()  # a running job resumes from its checkpoints: never touched
    for job in (failed, cancelled):
        job.refresh_from_db()
        assert job.checkpoints_deleted_at is not None
        assert log_of(job) == ["Checkpoints deleted (1.5 MB): kept 72 h after the job ended (LAYERCAKE_CHECKPOINT_RETENTION_HOURS)."]
    assert quota.usage_of(alice).checkpoints == sum(CHECKPOINT_FILES.values())  # the running job's
    tasks.check_jobs()  # once only: the next checks neither look again nor log again
    assert len(log_of(failed)) == 1


def test_zero_hours_of_retention_deletes_them_at_the_next_check(alice, settings):
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 0
    failed = ended_job(alice, Status.FAILED)
    store_checkpoint(failed)
    tasks.check_jobs()
    assert not local_checkpoints(failed).exists()


def test_jobs_without_checkpoints_of_their_own_are_left_alone(alice, settings):
    """A succeeded job deleted its own at once; merges and exports write none; a job that never ran has none."""
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 0
    succeeded, merge = ended_job(alice, Status.SUCCEEDED, hours_ago=1000), ended_job(alice, Status.FAILED, 1000, Kind.MERGE)
    never_ran = Job.objects.create(owner=alice, method="lora", task="sft")
    assert never_ran.cancel()
    tasks.check_jobs()
    assert not Job.objects.filter(checkpoints_deleted_at__isnull=False).exists()
    assert not any(log_of(job) for job in (succeeded, merge, never_ran))


def test_the_job_page_says_until_when_the_checkpoints_are_kept_then_that_they_were_deleted(client_alice, alice, settings):
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 72
    failed = ended_job(alice, Status.FAILED, hours_ago=1)
    store_checkpoint(failed)
    page = client_alice.get(reverse("jobs:detail", args=[failed.pk])).content.decode()
    assert 'id="checkpoint-retention"' in page
    assert "Its checkpoints are kept until" in page and "a retry starts from the beginning" in page
    Job.objects.filter(pk=failed.pk).update(finished_at=timezone.now() - timedelta(hours=80))
    tasks.check_jobs()
    page = client_alice.get(reverse("jobs:detail", args=[failed.pk])).content.decode()
    assert "Its checkpoints were deleted" in page and "kept until" not in page
    assert "Checkpoints deleted (1.5 MB)" in page  # the log line


def test_a_retry_is_a_new_job_with_checkpoints_of_its_own(alice):
    """Why nothing needs the old checkpoints: a retry is planned afresh and resumes from nothing of the job it retries."""
    failed = ended_job(alice, Status.FAILED)
    retry = Job.objects.create(owner=alice, method="lora", task="sft", retry_of=failed)
    assert remote_store(retry).prefix != remote_store(failed).prefix
    assert runner.job_folder(retry, "checkpoints") != local_checkpoints(failed)


def test_with_s3_they_are_deleted_from_the_bucket_and_the_disk_after_the_window(alice, remote, settings, tmp_path):
    settings.LAYERCAKE_CHECKPOINT_RETENTION_HOURS = 72
    expired, recent = ended_job(alice, Status.FAILED, hours_ago=80), ended_job(alice, Status.CANCELLED, hours_ago=2)
    for job in (expired, recent):
        checkpoint = tmp_path / str(job.pk) / "checkpoint-4"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_model.safetensors").write_bytes(b"w" * (2 * 1024 * 1024))
        assert remote_store(job).upload(checkpoint, set(), stop=lambda: False)
    on_disk = worker_copy(expired)
    tasks.check_jobs()
    assert stored_names(f"jobs/{expired.pk}") == [] and not on_disk.exists()
    assert CheckpointStore(f"jobs/{recent.pk}/checkpoints").complete() == [4]
    assert log_of(expired) == ["Checkpoints deleted (2.0 MB): kept 72 h after the job ended (LAYERCAKE_CHECKPOINT_RETENTION_HOURS)."]


def test_with_s3_a_worker_drops_its_own_copy_when_its_job_fails(alice, remote):
    """The bucket's copy is the one kept for the window; the worker's disk keeps nothing of a job that ended."""
    job = Job.objects.create(owner=alice, method="lora", task="sft", base_model=None)
    on_disk = worker_copy(job)
    assert job.start("gpu@test")
    runner.execute(job)  # its base model was deleted: the job fails before training
    job.refresh_from_db()
    assert job.status == Status.FAILED and not on_disk.exists()


def test_on_local_storage_a_failed_jobs_checkpoints_wait_for_the_retention_window(alice):
    job = Job.objects.create(owner=alice, method="lora", task="sft", base_model=None)
    store_checkpoint(job)
    assert job.start("gpu@test")
    runner.execute(job)
    job.refresh_from_db()
    assert job.status == Status.FAILED and local_checkpoints(job).exists()
