"""The one way in for dataset work: ingest an upload, check it, change its settings, delete it.

Browser views, API views and the Celery task all call these; none of them repeats the steps.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import unicodedata
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from webapp.accounts import quota
from webapp.datasets import profiling
from webapp.datasets.checking import CheckOptions, check_file
from webapp.datasets.layout import SNIFF_BYTES, ReadChoice, sniff_layout
from webapp.datasets.models import Dataset, Status
from webapp.datasets.shapes import EXPECTED_COLUMNS, TASKS
from webapp.datasets.uploads import UploadTooLarge, max_upload_bytes
from webapp.lib.background import send_after_commit
from webapp.lib.errors import LayercakeError, RowError
from webapp.lib.storage import local_path, stored_names

log = logging.getLogger(__name__)

MAX_VALIDATION_FRACTION = 0.5
# A check delivered this many times without finishing killed its workers (memory, a crash):
# the next delivery ends it instead of crashing another worker.
MAX_CHECK_ATTEMPTS = 3
KILLED_ITS_WORKER = (
    "Checking this file stopped its worker several times (too much memory, or a crash): "
    "split it into smaller files or convert it to JSONL."
)
MAX_LENGTH_RANGE = (16, 131_072)
DEFAULT_MAX_LENGTH = 1024
# Where model configs say how many positions the model reads (T5's relative positions have no limit).
POSITION_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def display_name(filename: str) -> str:
    """A client's file name made safe to show: no folders, no control characters, bounded."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:200] or "dataset"


def _check_upload(upload: UploadedFile | None, label: str = "file", choice: ReadChoice | None = None) -> str:
    """The format of an upload, sniffed from its first bytes: binary junk is refused before it is stored."""
    if upload is None:
        raise LayercakeError(f"No {label} was uploaded: attach the dataset as `{label}`.")
    if upload.size is None or upload.size == 0:
        raise LayercakeError(f"The {label} is empty.")
    if upload.size > max_upload_bytes():
        raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
    upload.seek(0)
    head = upload.read(SNIFF_BYTES)
    upload.seek(0)
    return sniff_layout(head, upload.name or "", choice, complete=upload.size <= len(head)).fmt


def model_positions(model: Any) -> int | None:
    """How many tokens a catalog model reads at most, from its config.json; None when it does not say."""
    if model is None:
        return None
    try:
        with default_storage.open(f"{model.storage_prefix}/config.json") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return None
    configs = [config, config.get("text_config") or {}] if isinstance(config, dict) else []
    for part in configs:
        for key in POSITION_KEYS:
            value = part.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def fitting_max_length(max_length: int | None, model: Any) -> int:
    """The maximum length to use: the one asked for, else the default within the model's positions;
    a length past the model's positions is refused, never accepted and never offered."""
    positions = model_positions(model)
    if max_length is None:
        return min(DEFAULT_MAX_LENGTH, positions or DEFAULT_MAX_LENGTH)
    if positions is not None and max_length > positions:
        raise LayercakeError(
            f"{model.name} reads at most {positions} tokens: choose a maximum length of {positions} or less.",
            [RowError(None, "max_length", f"at most {positions} for {model.name}")],
        )
    return max_length


def bounded_max_length(dataset: Dataset) -> int:
    """The dataset's maximum length within its profile model's positions (older rows may hold more)."""
    return min(dataset.max_length, model_positions(dataset.profile_model) or dataset.max_length)


def _check_settings(task: str, validation_fraction: float, max_length: int, mapping: dict[str, str]) -> None:
    if task and task not in TASKS:
        raise LayercakeError(f"Unknown task `{task[:40]}`: choose one of {', '.join(TASKS)}.")
    if not 0.0 <= validation_fraction <= MAX_VALIDATION_FRACTION:
        raise LayercakeError(f"The validation fraction must be between 0 and {MAX_VALIDATION_FRACTION}.")
    if not MAX_LENGTH_RANGE[0] <= max_length <= MAX_LENGTH_RANGE[1]:
        raise LayercakeError(f"The maximum length must be between {MAX_LENGTH_RANGE[0]} and {MAX_LENGTH_RANGE[1]} tokens.")
    for expected, source in mapping.items():
        if expected not in EXPECTED_COLUMNS:
            raise LayercakeError(f"Cannot map onto `{str(expected)[:40]}`: expected columns are {', '.join(EXPECTED_COLUMNS)}.")
        if not isinstance(source, str) or len(source) > 200:
            raise LayercakeError(f"The column mapped onto `{expected}` must be a column name.")


def ingest(
    upload: UploadedFile | None,
    owner: Any,
    name: str = "",
    task: str = "",
    *,
    validation_upload: UploadedFile | None = None,
    validation_fraction: float = 0.0,
    mapping: dict[str, str] | None = None,
    profile_model: Any = None,
    max_length: int | None = None,
    read_choice: ReadChoice | None = None,
) -> Dataset:
    """Store an upload (and an optional validation file) under datasets/<uuid>/ and queue its check."""
    read_choice = read_choice or ReadChoice()
    fmt = _check_upload(upload, "file", read_choice)
    assert upload is not None
    validation_choice = ReadChoice(delimiter=read_choice.delimiter, header=read_choice.header)
    validation_fmt = _check_upload(validation_upload, "validation file", validation_choice) if validation_upload is not None else ""
    mapping = {key: value for key, value in (mapping or {}).items() if value}
    max_length = fitting_max_length(max_length, profile_model)
    _check_settings(task, validation_fraction, max_length, mapping)
    incoming = (upload.size or 0) + ((validation_upload.size or 0) if validation_upload is not None else 0)
    quota.check_room(owner, incoming)  # again on the streamed size: the declared one may have lied
    dataset_id = uuid.uuid4()
    prefix = f"datasets/{dataset_id}"
    stored: list[str] = []
    try:
        # The stored name comes from the detected format, never from the client's file name.
        stored.append(default_storage.save(f"{prefix}/source.{fmt}", upload))
        if validation_upload is not None:
            stored.append(default_storage.save(f"{prefix}/validation-source.{validation_fmt}", validation_upload))
        with transaction.atomic():
            dataset = Dataset.objects.create(
                id=dataset_id,
                owner=owner,
                name=(name or "").strip()[:200] or display_name(upload.name or ""),
                original_filename=display_name(upload.name or ""),
                file_format=fmt,
                source_file=stored[0],
                size_bytes=upload.size or 0,
                validation_source_file=stored[1] if validation_upload is not None else "",
                validation_file_format=validation_fmt,
                validation_original_filename=display_name(validation_upload.name or "") if validation_upload else "",
                validation_fraction=0.0 if validation_upload is not None else validation_fraction,
                declared_task=task,
                task=task,
                column_mapping=mapping,
                profile_model=profile_model,
                max_length=max_length,
                read_choice=read_choice.as_dict(),
            )
            schedule_check(dataset)
    except BaseException:
        for name_in_storage in stored:
            default_storage.delete(name_in_storage)
        raise
    return dataset


def schedule_check(dataset: Dataset) -> None:
    """Send the check to a checks worker once the row is committed, with its task id stored on the row."""
    from webapp.datasets.tasks import check_dataset

    dataset_id = str(dataset.pk)

    def unreachable(reason: str) -> None:  # never check inline instead, and never leave it waiting
        stored = Dataset.objects.filter(pk=dataset_id).first()
        if stored is not None:
            stored.fail("The checking queue was unreachable: use “Save and check again” to retry.")

    dataset.record_check_sent(send_after_commit(check_dataset, [dataset_id], on_failure=unreachable))


def recover_stuck_checks() -> list[Dataset]:
    """Checks whose message was lost or whose worker died: sent again, or ended `invalid` with the reason.

    Stuck means `uploaded` with no delivery LAYERCAKE_RESEND_AFTER_SECONDS after its last message, or
    checking for longer than LAYERCAKE_CHECK_STUCK_SECONDS (past the task's hard time limit, so no
    worker is still on it). A duplicate delivery is harmless: `begin_check` lets one win and a finished
    check is not redone. After LAYERCAKE_MAX_SENDS messages a dataset ends with a reason, unless the
    checks worker is visibly busy (a long queue, a long check): then it only waits its turn.
    """
    now = timezone.now()
    resend_cutoff = now - timedelta(seconds=settings.LAYERCAKE_RESEND_AFTER_SECONDS)
    stuck_cutoff = now - timedelta(seconds=settings.LAYERCAKE_CHECK_STUCK_SECONDS)
    last_sent_long_ago = Q(check_sent_at__lt=resend_cutoff) | Q(check_sent_at__isnull=True, check_requested_at__lt=resend_cutoff)
    stalled = Q(check_started_at__lt=stuck_cutoff) | Q(check_started_at__isnull=True, check_requested_at__lt=stuck_cutoff)
    stuck = Dataset.objects.filter(last_sent_long_ago).filter(Q(status=Status.UPLOADED) | (Q(status=Status.CHECKING) & stalled))
    recovered = []
    for dataset in stuck:
        if dataset.status == Status.CHECKING and dataset.check_attempts >= MAX_CHECK_ATTEMPTS:
            log.error("dataset %s: %s deliveries without a result; giving up", dataset.pk, dataset.check_attempts)
            dataset.fail(KILLED_ITS_WORKER)
        elif dataset.check_sends >= settings.LAYERCAKE_MAX_SENDS and not _checks_moving(dataset.check_sent_at, stuck_cutoff):
            log.error("dataset %s: %s messages sent, none checked it; giving up", dataset.pk, dataset.check_sends)
            dataset.fail(
                f"No checking worker took this dataset after {dataset.check_sends} tries: the checks worker may "
                "be down. Use “Save and check again” to retry."
            )
        else:
            log.warning("dataset %s: %s and silent since %s; sending its check again", dataset.pk, dataset.status,
                        dataset.check_sent_at)
            with transaction.atomic():
                schedule_check(dataset)
        recovered.append(dataset)
    return recovered


def _checks_moving(since: datetime | None, stuck_cutoff: datetime) -> bool:
    """A checks worker took another check after `since`, or is on one that may still be running."""
    started_since = Q(check_started_at__gt=since) if since is not None else Q(check_started_at__isnull=False)
    on_one_now = Q(status=Status.CHECKING, check_started_at__gte=stuck_cutoff)
    return Dataset.objects.filter(started_since | on_one_now).exists()


def change_settings(
    dataset: Dataset,
    *,
    mapping: dict[str, str] | None = None,
    task: str | None = None,
    validation_fraction: float | None = None,
    profile_model: Any = None,
    max_length: int | None = None,
    read_choice: ReadChoice | None = None,
) -> Dataset:
    """New column mapping, task, split, profile model or way to read the file: checked again from its file."""
    changes: dict[str, Any] = {}
    if read_choice is not None:
        changes["read_choice"] = read_choice.as_dict()
    if mapping is not None:
        changes["column_mapping"] = {key: value for key, value in mapping.items() if value}
    if task is not None:
        changes["declared_task"] = task
    if validation_fraction is not None and not dataset.validation_source_file:
        changes["validation_fraction"] = validation_fraction
    if profile_model is not None:
        changes["profile_model"] = profile_model or None
    model = changes.get("profile_model", dataset.profile_model)
    if max_length is not None:
        changes["max_length"] = fitting_max_length(max_length, model)
    elif "profile_model" in changes:
        changes["max_length"] = min(dataset.max_length, model_positions(model) or dataset.max_length)
    _check_settings(
        changes.get("declared_task", dataset.declared_task),
        changes.get("validation_fraction", dataset.validation_fraction),
        changes.get("max_length", dataset.max_length),
        changes.get("column_mapping", dataset.column_mapping),
    )
    with transaction.atomic():
        if not dataset.request_check(**changes):
            raise LayercakeError("The dataset is still being checked: wait until it is ready or invalid.", status=409)
        schedule_check(dataset)
    return dataset


def restore_last_ready_settings(dataset: Dataset) -> Dataset:
    """Undo a mapping or task that did not fit: check again with those of the last check that made it ready."""
    last = dataset.last_ready_settings or {}
    if not last:
        raise LayercakeError("This dataset has never been ready, so there are no working settings to go back to.", status=409)
    return change_settings(dataset, mapping=dict(last.get("column_mapping") or {}), task=str(last.get("declared_task") or ""))


def drop_exact_duplicates(dataset: Dataset) -> Dataset:
    """A new version of a ready dataset without its exact duplicates, uploaded and checked like any other file;
    the dataset itself is left as it is. The copy holds the normalized columns (the mapping is applied)."""
    if dataset.status != Status.READY:
        raise LayercakeError("Only a ready dataset can be deduplicated: fix it or wait for its check first.", status=409)
    if not (dataset.profile.get("duplicates") or {}).get("exact"):
        raise LayercakeError("This dataset has no exact duplicates to drop.", status=409)
    files = local_normalized_files(dataset)
    cache = Path(settings.LAYERCAKE_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dedup-{dataset.pk}-", dir=cache) as tmp:
        train, validation = Path(tmp) / "train.parquet", Path(tmp) / "validation.parquet"
        # A validation file stays a file of its own; a split by fraction is made again, alike, from the rows.
        own_validation = bool(dataset.validation_source_file) and "validation" in files
        order = [split for split in ("train", "validation") if split in files]
        parts = [(files[split], validation if own_validation and split == "validation" else train) for split in order]
        dropped = profiling.drop_exact_duplicates(parts)
        stem = Path(dataset.original_filename).stem or "dataset"
        with train.open("rb") as train_file, ExitStack() as stack:
            validation_upload = None
            if own_validation:
                handle = stack.enter_context(validation.open("rb"))
                validation_upload = UploadedFile(handle, f"{stem} validation (deduplicated).parquet", size=validation.stat().st_size)
            with transaction.atomic():
                copy = ingest(
                    UploadedFile(train_file, f"{stem} (deduplicated).parquet", size=train.stat().st_size),
                    dataset.owner,
                    name=f"{dataset.name[:180]} (deduplicated)",
                    task=dataset.declared_task,
                    validation_upload=validation_upload,
                    validation_fraction=0.0 if own_validation else dataset.validation_fraction,
                    profile_model=dataset.profile_model,
                    max_length=bounded_max_length(dataset),
                )
                Dataset.objects.filter(pk=copy.pk).update(derived_from=dataset)
                copy.derived_from = dataset
    log.info("dataset %s: %d exact duplicates dropped into %s", dataset.pk, dropped, copy.pk)
    return copy


@dataclass(frozen=True)
class CheckQueuePosition:
    """What stands between a waiting check and a worker: counts only, never others' datasets or jobs."""

    checks_ahead: int  # checks asked for before this one, still waiting
    checking: int  # checks running now
    jobs_running: int  # training jobs holding a worker that also checks datasets
    workers: int  # online workers taking checks

    def describe(self) -> str:
        if not self.workers:
            return "No worker that checks datasets is online: the check starts when one does."
        parts = []
        if self.checks_ahead:
            parts.append(f"{self.checks_ahead} check{'s' if self.checks_ahead != 1 else ''} ahead of this one")
        if self.checking:
            parts.append(f"{self.checking} being checked now")
        if self.jobs_running:
            parts.append(f"{self.jobs_running} training job{'s' if self.jobs_running != 1 else ''} holding the checking worker")
        if not parts:
            return "Next in the queue: the check starts in a moment."
        return "Waiting in the queue: " + ", ".join(parts) + "."


def check_queue_position(dataset: Dataset) -> CheckQueuePosition | None:
    """Where a dataset waiting for its check stands in the checks queue; None once its check has started."""
    if dataset.status != Status.UPLOADED:
        return None
    from jobs.services import online_workers  # jobs depends on datasets: imported here, not at the top

    queue = getattr(settings, "CHECKS_QUEUE", settings.CELERY_TASK_DEFAULT_QUEUE)
    workers = [worker for worker in online_workers() if queue in (worker.queues or [])]
    ahead = Dataset.objects.filter(status=Status.UPLOADED, check_requested_at__lt=dataset.check_requested_at)
    return CheckQueuePosition(
        checks_ahead=ahead.exclude(pk=dataset.pk).count(),
        checking=Dataset.objects.filter(status=Status.CHECKING).count(),
        jobs_running=sum(1 for worker in workers if worker.current_job_id is not None),
        workers=len(workers),
    )


def _local_path(name: str, workdir: Path) -> Path:
    """A local path for a stored file: the file itself on local disk, a downloaded copy otherwise."""
    return local_path(name, workdir / Path(name).name)


def _load_tokenizer(dataset: Dataset) -> Any:
    from transformers import AutoTokenizer

    model = dataset.profile_model
    assert model is not None
    return AutoTokenizer.from_pretrained(str(model.local_dir()), trust_remote_code=False)


def check_dataset(dataset: Dataset) -> Dataset:
    """Check the dataset's file; it ends `ready` with a profile and a normalized copy, or `invalid`."""
    if not dataset.begin_check():
        if not dataset.resume_check():
            log.info("dataset %s: already %s, nothing to check", dataset.pk, dataset.status)
            dataset.refresh_from_db()
            return dataset
        if dataset.check_attempts > MAX_CHECK_ATTEMPTS:
            log.error("dataset %s: %s deliveries without a result; giving up", dataset.pk, dataset.check_attempts - 1)
            dataset.fail(KILLED_ITS_WORKER)
            dataset.refresh_from_db()
            return dataset
        log.warning("dataset %s: found mid-check (an earlier worker died?); checking again", dataset.pk)
    try:
        _check_dataset(dataset)
    except Exception as exc:  # never leave a dataset stuck checking
        log.exception("dataset %s: checking failed", dataset.pk)
        reason = (
            "Checking took too long: split the file into smaller ones."
            if type(exc).__name__ == "SoftTimeLimitExceeded"
            else f"Checking failed unexpectedly ({type(exc).__name__}); this is a bug on our side."
        )
        dataset.fail(reason)
    dataset.refresh_from_db()
    return dataset


def _check_dataset(dataset: Dataset) -> None:
    cache = Path(settings.LAYERCAKE_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dataset-{dataset.pk}-", dir=cache) as tmp:
        workdir = Path(tmp)
        # The format is sniffed again from the stored file, so a new read choice takes effect.
        options = CheckOptions(
            filename=dataset.original_filename,
            choice=ReadChoice.from_dict(dataset.read_choice),
            validation_filename=dataset.validation_original_filename,
            task=dataset.declared_task,
            mapping=dict(dataset.column_mapping),
            validation_fraction=dataset.validation_fraction,
            max_length=bounded_max_length(dataset),
        )
        if dataset.validation_source_file:
            options.validation_path = _local_path(dataset.validation_source_file, workdir)
        tokenizer_problem = ""
        if dataset.profile_model is not None:
            try:
                options.tokenizer = _load_tokenizer(dataset)
                options.model_name = dataset.profile_model.name
            except Exception as exc:  # a broken model folder must not fail the dataset
                log.warning("dataset %s: tokenizer of %s not loaded: %s", dataset.pk, dataset.profile_model, exc)
                tokenizer_problem = f"The tokenizer of {dataset.profile_model.name} could not be loaded: no token lengths."
        source = _local_path(dataset.source_file, workdir)
        result = check_file(source, options, workdir)
        if tokenizer_problem:
            result.profile.setdefault("warnings", []).append(tokenizer_problem)
        if not result.ok:
            # The file has not changed: when this check could not read its columns, the last ones still hold.
            dataset.fail(
                result.error, result.errors, result.error_count, shape=result.shape, task=result.task or dataset.declared_task,
                rows=result.rows or None, columns=result.columns or dataset.columns, profile=result.profile,
                preview=result.preview, **_reading_found(result),
            )
            return
        stored = _store_normalized(dataset, result.normalized)
        if not dataset.succeed(
            shape=result.shape, task=result.task, rows=result.rows, columns=result.columns,
            profile=result.profile, preview=result.preview, normalized=stored, **_reading_found(result),
        ):
            log.warning("dataset %s: no longer checking when its check ended; result dropped", dataset.pk)


def _reading_found(result: Any) -> dict[str, Any]:
    """The fields a check updates about how the file was read: what it detected, the formats it used."""
    found: dict[str, Any] = {"detected": result.detected}
    if result.detected.get("format"):
        found["file_format"] = result.detected["format"]
    if (result.detected.get("validation") or {}).get("format"):
        found["validation_file_format"] = result.detected["validation"]["format"]
    return found


def _store_normalized(dataset: Dataset, files: dict[str, Path]) -> dict[str, str]:
    stored: dict[str, str] = {}
    for split in ("train", "validation"):
        name = f"{dataset.storage_prefix}/normalized/{split}.parquet"
        default_storage.delete(name)  # a re-check replaces the old copy, under the same name
        if split in files:
            with files[split].open("rb") as handle:
                stored[split] = default_storage.save(name, File(handle, name=f"{split}.parquet"))
    return stored


def local_normalized_files(dataset: Dataset) -> dict[str, Path]:
    """split -> a local path of the normalized Parquet file, for workers (downloaded when storage is remote)."""
    paths: dict[str, Path] = {}
    for split, name in dataset.normalized_files().items():
        paths[split] = local_path(name, Path(settings.LAYERCAKE_CACHE) / "datasets" / str(dataset.pk) / f"{split}.parquet")
    return paths


def delete_dataset(dataset: Dataset) -> None:
    """Remove the row and every file under datasets/<uuid>/ (and the worker cache of it)."""
    prefix, dataset_id = dataset.storage_prefix, str(dataset.pk)
    names = set(stored_names(prefix)) | {dataset.source_file, dataset.validation_source_file}
    names |= set(dict(dataset.normalized).values())
    dataset.delete()
    for name in names - {""}:
        default_storage.delete(name)
    try:
        folder = Path(default_storage.path(prefix))
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
    except NotImplementedError:
        pass
    shutil.rmtree(Path(settings.LAYERCAKE_CACHE) / "datasets" / dataset_id, ignore_errors=True)

