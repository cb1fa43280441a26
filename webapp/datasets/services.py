"""The one way in for dataset work: ingest an upload, check it, change its settings, delete it.

Browser views, API views and the Celery task all call these; none of them repeats the steps.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.base import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from webapp.datasets.checking import CheckOptions, check_file
from webapp.datasets.models import Dataset
from webapp.datasets.reading import format_from_name
from webapp.datasets.shapes import EXPECTED_COLUMNS, TASKS
from webapp.lib.errors import LayercakeError
from webapp.lib.storage import local_path

log = logging.getLogger(__name__)

MAX_VALIDATION_FRACTION = 0.5
# A check delivered this many times without finishing killed its workers (memory, a crash):
# the next delivery ends it instead of crashing another worker.
MAX_CHECK_ATTEMPTS = 3
MAX_LENGTH_RANGE = (16, 131_072)


class UploadTooLarge(LayercakeError):
    def __init__(self, limit_mb: int) -> None:
        super().__init__(f"The file is larger than the {limit_mb} MB upload limit: split it or ask for a higher limit.", status=413)


def max_upload_bytes() -> int:
    return int(settings.LAYERCAKE_MAX_UPLOAD_MB) * 1024 * 1024


def display_name(filename: str) -> str:
    """A client's file name made safe to show: no folders, no control characters, bounded."""
    base = re.split(r"[\\/]", filename or "")[-1]
    cleaned = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return cleaned[:200] or "dataset"


def _check_upload(upload: UploadedFile | None, label: str = "file") -> str:
    if upload is None:
        raise LayercakeError(f"No {label} was uploaded: attach the dataset as `{label}`.")
    if upload.size is None or upload.size == 0:
        raise LayercakeError(f"The {label} is empty.")
    if upload.size > max_upload_bytes():
        raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
    return format_from_name(upload.name or "")


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
    max_length: int = 1024,
) -> Dataset:
    """Store an upload (and an optional validation file) under datasets/<uuid>/ and queue its check."""
    fmt = _check_upload(upload, "file")
    assert upload is not None
    validation_fmt = _check_upload(validation_upload, "validation file") if validation_upload is not None else ""
    mapping = {key: value for key, value in (mapping or {}).items() if value}
    _check_settings(task, validation_fraction, max_length, mapping)
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
            )
            schedule_validation(dataset)
    except BaseException:
        for name_in_storage in stored:
            default_storage.delete(name_in_storage)
        raise
    return dataset


def schedule_validation(dataset: Dataset) -> None:
    """Send the check to a CPU worker once the row is committed, and remember the task id."""
    from webapp.datasets.tasks import validate_dataset

    dataset_id = str(dataset.pk)

    def send() -> None:
        try:
            result = validate_dataset.delay(dataset_id)
        except Exception:  # the broker is down: never check inline instead, and never leave it waiting
            log.exception("dataset %s: the check could not be queued", dataset_id)
            stored = Dataset.objects.filter(pk=dataset_id).first()
            if stored is not None:
                stored.fail("The checking queue was unreachable: use “Save and check again” to retry.")
            return
        Dataset.objects.filter(pk=dataset_id).update(task_id=result.id or "")

    transaction.on_commit(send)


def change_settings(
    dataset: Dataset,
    *,
    mapping: dict[str, str] | None = None,
    task: str | None = None,
    validation_fraction: float | None = None,
    profile_model: Any = None,
    max_length: int | None = None,
) -> Dataset:
    """New column mapping, task, split or profile model: the dataset is checked again from its file."""
    changes: dict[str, Any] = {}
    if mapping is not None:
        changes["column_mapping"] = {key: value for key, value in mapping.items() if value}
    if task is not None:
        changes["declared_task"] = task
    if validation_fraction is not None and not dataset.validation_source_file:
        changes["validation_fraction"] = validation_fraction
    if profile_model is not None:
        changes["profile_model"] = profile_model or None
    if max_length is not None:
        changes["max_length"] = max_length
    _check_settings(
        changes.get("declared_task", dataset.declared_task),
        changes.get("validation_fraction", dataset.validation_fraction),
        changes.get("max_length", dataset.max_length),
        changes.get("column_mapping", dataset.column_mapping),
    )
    with transaction.atomic():
        if not dataset.request_validation(**changes):
            raise LayercakeError("The dataset is still being checked: wait until it is ready or invalid.", status=409)
        schedule_validation(dataset)
    return dataset


def _local_path(name: str, workdir: Path) -> Path:
    """A local path for a stored file: the file itself on local disk, a downloaded copy otherwise."""
    return local_path(name, workdir / Path(name).name)


def _load_tokenizer(dataset: Dataset) -> Any:
    from transformers import AutoTokenizer

    model = dataset.profile_model
    assert model is not None
    return AutoTokenizer.from_pretrained(str(model.local_dir()), trust_remote_code=False)


def validate(dataset: Dataset) -> Dataset:
    """Check the dataset's file; it ends `ready` with a profile and a normalized copy, or `invalid`."""
    if not dataset.begin_validation():
        if not dataset.resume_validation():
            log.info("dataset %s: already %s, nothing to check", dataset.pk, dataset.status)
            dataset.refresh_from_db()
            return dataset
        if dataset.check_attempts > MAX_CHECK_ATTEMPTS:
            log.error("dataset %s: %s deliveries without a result; giving up", dataset.pk, dataset.check_attempts - 1)
            dataset.fail(
                "Checking this file stopped its worker several times (too much memory, or a crash): "
                "split it into smaller files or convert it to JSONL."
            )
            dataset.refresh_from_db()
            return dataset
        log.warning("dataset %s: found validating (an earlier worker died?); checking again", dataset.pk)
    try:
        _validate(dataset)
    except Exception as exc:  # never leave a dataset stuck in `validating`
        log.exception("dataset %s: checking failed", dataset.pk)
        reason = (
            "Checking took too long: split the file into smaller ones."
            if type(exc).__name__ == "SoftTimeLimitExceeded"
            else f"Checking failed unexpectedly ({type(exc).__name__}); this is a bug on our side."
        )
        dataset.fail(reason)
    dataset.refresh_from_db()
    return dataset


def _validate(dataset: Dataset) -> None:
    cache = Path(settings.LAYERCAKE_CACHE)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"dataset-{dataset.pk}-", dir=cache) as tmp:
        workdir = Path(tmp)
        options = CheckOptions(
            fmt=dataset.file_format,
            task=dataset.declared_task,
            mapping=dict(dataset.column_mapping),
            validation_fraction=dataset.validation_fraction,
            max_length=dataset.max_length,
        )
        if dataset.validation_source_file:
            options.validation_path = _local_path(dataset.validation_source_file, workdir)
            options.validation_fmt = dataset.validation_file_format
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
            dataset.fail(
                result.error, result.errors, result.error_count, shape=result.shape, task=result.task or dataset.declared_task,
                rows=result.rows or None, columns=result.columns, profile=result.profile, preview=result.preview,
            )
            return
        stored = _store_normalized(dataset, result.normalized)
        if not dataset.succeed(
            shape=result.shape, task=result.task, rows=result.rows, columns=result.columns,
            profile=result.profile, preview=result.preview, normalized=stored,
        ):
            log.warning("dataset %s: left `validating` while being checked; result dropped", dataset.pk)


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


def _stored_names(prefix: str) -> list[str]:
    try:
        folders, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotImplementedError):
        return []
    names = [f"{prefix}/{file}" for file in files]
    for folder in folders:
        names += _stored_names(f"{prefix}/{folder}")
    return names


def delete_dataset(dataset: Dataset) -> None:
    """Remove the row and every file under datasets/<uuid>/ (and the worker cache of it)."""
    prefix, dataset_id = dataset.storage_prefix, str(dataset.pk)
    names = set(_stored_names(prefix)) | {dataset.source_file, dataset.validation_source_file}
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

