"""Per-user storage quotas: what a user's datasets, models, GGUF exports and job checkpoints take, and room for more.

What is counted, from what is stored:
- datasets: every file under the dataset's folder on local storage (the upload, the validation file, the
  normalized copies); with remote storage (S3), the upload's recorded size only;
- models: the recorded sizes of the user's own models' files (`CatalogModel.files`); shared bases count for nobody;
- GGUF exports: the recorded sizes of the files of the user's proven exports (`Job.summary["gguf"]["files"]`) of
  models not deleted (deleting a model deletes its exports);
- checkpoints: on local storage, the files in the checkpoint folders of the user's jobs; with remote storage, the
  objects under each job's checkpoint prefix in the bucket (a worker's disk holds only a working copy of those), one
  listing per job that may still have some: training jobs that ran, not succeeded, not yet deleted by the retention.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Sum
from django.urls import reverse

from jobs.training import registry
from webapp.lib.errors import LayercakeError, RowError
from webapp.lib.storage import stored_path

MB = 1024 * 1024


def size_text(size: int) -> str:
    """Sizes in the unit quotas and upload limits are set in (MB of 1024 x 1024 bytes)."""
    if size >= 1024 * MB:
        return f"{size / (1024 * MB):.2f} GB"
    return f"{size / MB:.1f} MB"


@dataclass(frozen=True)
class StorageUsage:
    datasets: int
    models: int
    checkpoints: int
    exports: int
    quota: int  # bytes; 0: unlimited

    @property
    def total(self) -> int:
        return self.datasets + self.models + self.checkpoints + self.exports

    @property
    def unlimited(self) -> bool:
        return self.quota <= 0

    @property
    def free(self) -> int | None:
        """Bytes left before the quota; None when there is no quota."""
        return None if self.unlimited else max(0, self.quota - self.total)

    @property
    def percent(self) -> int:
        if self.unlimited:
            return 0
        return min(100, round(100 * self.total / self.quota))

    def describe(self) -> str:
        parts = (
            f"datasets {size_text(self.datasets)}, models {size_text(self.models)}, "
            f"GGUF exports {size_text(self.exports)}, checkpoints {size_text(self.checkpoints)}"
        )
        if self.unlimited:
            return f"{size_text(self.total)} ({parts}), no quota"
        return f"{size_text(self.total)} of your {size_text(self.quota)} quota ({parts})"


class QuotaExceeded(LayercakeError):
    """413: storing `incoming` bytes more would take the user past their quota."""

    def __init__(self, usage: StorageUsage, incoming: int, what: str = "This upload") -> None:
        account = reverse("account")
        super().__init__(
            f"{what} ({size_text(incoming)}) would take you past your storage quota: you use {usage.describe()}. "
            f"Delete datasets or models you no longer need (see {account}), or ask for a larger quota.",
            [RowError(None, "quota", f"used {usage.total} of {usage.quota} bytes; {incoming} more asked; see {account}")],
            status=413,
        )
        self.usage = usage
        self.help_url = account


def quota_bytes() -> int:
    return max(0, int(settings.LAYERCAKE_USER_QUOTA_MB)) * MB


def folder_bytes(folder: Path) -> int:
    """Sizes of the files under `folder` (0 when it is not there); links are not followed."""
    total = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                total += folder_bytes(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


def dataset_bytes(user: Any) -> int:
    from webapp.datasets.models import Dataset

    total = 0
    for dataset_id, recorded in Dataset.objects.filter(owner=user).values_list("id", "size_bytes"):
        folder = stored_path(f"datasets/{dataset_id}")
        total += folder_bytes(folder) if folder is not None else recorded
    return total


def model_bytes(user: Any) -> int:
    from webapp.catalog.models import CatalogModel

    return int(CatalogModel.objects.filter(owner=user).aggregate(total=Sum("size_bytes"))["total"] or 0)


def checkpoint_bytes(user: Any) -> int:
    from jobs.checkpoint_store import local_job_folder, remote_store, storage_is_remote
    from jobs.models import Job

    jobs = Job.objects.filter(owner=user)
    if storage_is_remote():
        return sum(remote_store(job).stored_bytes() for job in jobs.may_hold_checkpoints().only("id"))
    return sum(folder_bytes(local_job_folder(job_id, "checkpoints")) for job_id in jobs.values_list("id", flat=True))


def exported_bytes(summary: dict[str, Any] | None) -> int:
    """What a GGUF export job's files take, by its summary (none for a refused export, or one another replaced)."""
    files = ((summary or {}).get("gguf") or {}).get("files") or []
    return sum(int(entry["size_bytes"]) for entry in files)


def export_bytes(user: Any) -> int:
    from jobs.models import Job, Kind, Status

    summaries = Job.objects.filter(owner=user, kind=Kind.EXPORT, status=Status.SUCCEEDED, base_model__isnull=False)
    return sum(exported_bytes(summary) for summary in summaries.values_list("summary", flat=True))


def usage_of(user: Any) -> StorageUsage:
    """What `user` stores now, by kind, and their quota."""
    return StorageUsage(dataset_bytes(user), model_bytes(user), checkpoint_bytes(user), export_bytes(user), quota_bytes())


def free_bytes(user: Any) -> int | None:
    """Room left in `user`'s quota; None when unlimited (or for nobody: shared models count against no one)."""
    if user is None or not getattr(user, "is_authenticated", False) or quota_bytes() == 0:
        return None
    return usage_of(user).free


def check_room(user: Any, incoming: int, what: str = "This upload") -> None:
    """Raise QuotaExceeded (413) when storing `incoming` more bytes would take `user` past their quota."""
    if user is None or not getattr(user, "is_authenticated", False) or quota_bytes() == 0:
        return
    usage = usage_of(user)
    if usage.total + max(0, incoming) > usage.quota:
        raise QuotaExceeded(usage, incoming, what)


def expected_result_bytes(base_model: Any, method: str) -> int:
    """About what a job's result adds: a full model is about its base's size; an adapter is small (counted as 0)."""
    return 0 if method in registry.ADAPTER_METHODS else int(base_model.size_bytes or 0)
