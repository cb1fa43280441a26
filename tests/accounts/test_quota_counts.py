"""What the quota counts beyond datasets and models: checkpoints in the S3 bucket (not a worker's working copy) and
GGUF exports, for the owner, on the Account page and against new uploads."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from jobs.checkpoint_store import storage_is_remote
from jobs.models import Job, Kind, Status
from webapp.accounts import quota
from webapp.catalog.models import CatalogModel
from webapp.catalog.models import Kind as ModelKind

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


@pytest.fixture
def remote(s3_storage: None) -> None:
    """Storage is a fresh S3 bucket (tests/conftest.py)."""
    assert storage_is_remote()


def training_job(owner: Any, status: str) -> Job:
    job = Job.objects.create(owner=owner, method="lora", task="sft")
    assert job.start("gpu@test")
    if status == Status.FAILED:
        assert job.fail("out of memory")
    elif status == Status.SUCCEEDED:
        assert job.succeed(None, {}, {})
    return job


def store_checkpoint(job: Job, sizes: dict[str, int]) -> int:
    for name, size in sizes.items():
        default_storage.save(f"jobs/{job.pk}/checkpoints/{name}", ContentFile(b"c" * size))
    return sum(sizes.values())


def adapter_row(owner: Any, size: int = 1000) -> CatalogModel:
    model_id = uuid.uuid4()
    return CatalogModel.objects.create(
        id=model_id, owner=owner, name=f"adapter-{model_id.hex[:6]}", kind=ModelKind.ADAPTER, family="causal_lm",
        storage_prefix=f"models/{model_id}", size_bytes=size, task="sft",
        files=[{"name": "adapter_model.safetensors", "size_bytes": size, "sha256": ""}],
    )


def proven_export(owner: Any, model: CatalogModel | None, output_type: str, gguf_bytes: int, status: str = Status.SUCCEEDED) -> Job:
    """An export job as the runner leaves it: its files listed in the summary."""
    job = Job.objects.create(
        owner=owner, kind=Kind.EXPORT, base_model=model, method="export", task="sft", queue="cpu",
        hyperparameters={"type": output_type},
    )
    assert job.start("cpu@test")
    prefix = f"models/{model.pk if model else uuid.uuid4()}/gguf/{job.pk}"
    files = [{"name": f"model-{output_type}.gguf", "size_bytes": gguf_bytes, "sha256": ""},
             {"name": "Modelfile", "size_bytes": 120, "sha256": ""}]
    if status == Status.SUCCEEDED:
        assert job.succeed(None, {}, {"gguf": {"type": output_type, "files": files, "prefix": prefix}})
    else:
        assert job.fail("does not answer like the model")
    return job


def test_with_s3_checkpoints_count_by_their_bytes_in_the_bucket_not_on_a_workers_disk(alice, bob, remote):
    running, failed = training_job(alice, Status.RUNNING), training_job(alice, Status.FAILED)
    counted = store_checkpoint(running, {"checkpoint-8/adapter_model.safetensors": 70_000, "checkpoint-8.complete": 150})
    counted += store_checkpoint(failed, {"checkpoint-2/optimizer.pt": 30_000, "checkpoint-3/optimizer.pt": 1_000})
    # A worker's copy on its disk is a working copy of the bucket's, counted once: there.
    worker_copy = django_settings.LAYERCAKE_HOME / "jobs" / str(running.pk) / "checkpoints" / "checkpoint-8"
    worker_copy.mkdir(parents=True)
    (worker_copy / "adapter_model.safetensors").write_bytes(b"w" * 70_000)
    # Left out: a succeeded job's (it deletes its own), checkpoints the retention already deleted, bob's.
    store_checkpoint(training_job(alice, Status.SUCCEEDED), {"checkpoint-9/optimizer.pt": 5_000})
    deleted = training_job(alice, Status.FAILED)
    store_checkpoint(deleted, {"checkpoint-1/optimizer.pt": 5_000})
    Job.objects.filter(pk=deleted.pk).update(checkpoints_deleted_at=timezone.now())
    store_checkpoint(training_job(bob, Status.RUNNING), {"checkpoint-1/optimizer.pt": 9_000})

    usage = quota.usage_of(alice)
    assert usage.checkpoints == counted == 101_150
    assert quota.usage_of(bob).checkpoints == 9_000


def test_gguf_exports_count_for_the_owner_of_the_model_until_it_is_deleted(alice, bob):
    mine, theirs = adapter_row(alice), adapter_row(bob)
    proven_export(alice, mine, "f16", 400_000)
    proven_export(alice, mine, "q8_0", 200_000)
    proven_export(alice, mine, "q8_0", 999_999, status=Status.FAILED)  # a refused export stores nothing
    proven_export(alice, None, "f16", 999_999)  # its model was deleted, and its exports with it
    proven_export(bob, theirs, "f16", 50_000)
    usage = quota.usage_of(alice)
    assert usage.exports == 400_120 + 200_120
    assert usage.total == usage.models + usage.exports == 1000 + 600_240
    assert "GGUF exports 0.6 MB" in usage.describe()
    assert quota.usage_of(bob).exports == 50_120


def test_the_account_page_shows_what_gguf_exports_take(client_alice, alice, settings):
    settings.LAYERCAKE_USER_QUOTA_MB = 100
    proven_export(alice, adapter_row(alice), "f16", 5 * MB)
    page = client_alice.get("/account/").content.decode()
    assert "GGUF exports" in page and "5.0\xa0MB" in page


def test_an_upload_past_the_quota_counting_exports_is_refused(alice, settings):
    settings.LAYERCAKE_USER_QUOTA_MB = 1
    proven_export(alice, adapter_row(alice), "f16", MB - 100_000)
    with pytest.raises(quota.QuotaExceeded, match="GGUF exports"):
        quota.check_room(alice, 100_000)
