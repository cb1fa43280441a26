"""A catalog model's files in storage: stored once under models/<id>/ with checksums, read back locally, removed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from jobs.training.checksums import sha256_of
from webapp.catalog import model_files
from webapp.catalog.models import CatalogModel
from webapp.datasets.uploads import UploadTooLarge
from webapp.lib.errors import LayercakeError
from webapp.lib.storage import local_path, stored_names


def store_folder(folder: Path, prefix: str, names: list[Path] | None = None) -> list[dict[str, Any]]:
    """Copy the folder's kept files (or the `names` given) into storage under `prefix`; returns the file list with checksums."""
    entries: list[dict[str, Any]] = []
    try:
        for relative in model_files.kept_files(folder) if names is None else names:
            path = folder / relative
            name = f"{prefix}/{relative.as_posix()}"
            with path.open("rb") as handle:
                stored = default_storage.save(name, File(handle))
            if stored != name:  # storage renamed it: the prefix was not empty, which must not happen
                default_storage.delete(stored)
                raise LayercakeError(f"Storage already holds {name}; refusing to overwrite a model's files.")
            entries.append({"name": relative.as_posix(), "size_bytes": path.stat().st_size, "sha256": sha256_of(path)})
    except BaseException:
        # The files stored before the failure go too: nothing half-stored.
        delete_stored_files(prefix, entries)
        raise
    return entries


def delete_stored_files(prefix: str, files: list[dict[str, Any]]) -> None:
    for entry in files:
        default_storage.delete(f"{prefix}/{entry['name']}")


def save_with_files(model: CatalogModel, folder: Path) -> None:
    """Store the folder's files under models/<id>/ then save the row; on any failure neither remains."""
    model.storage_prefix = f"models/{model.id}"
    files: list[dict[str, Any]] = []
    try:
        files = store_folder(folder, model.storage_prefix)
        model.files = files
        model.size_bytes = sum(entry["size_bytes"] for entry in files)
        with transaction.atomic():
            model.save()
    except BaseException:
        delete_stored_files(model.storage_prefix, files)
        raise


def local_dir(model: CatalogModel) -> Path:
    """A local folder holding the model's files, for transformers to load.

    Local storage hands back its own folder; remote storage (S3) is copied once into the cache.
    """
    try:
        return Path(default_storage.path(model.storage_prefix))
    except NotImplementedError:
        pass
    target = settings.LAYERCAKE_CACHE / "models" / str(model.id)
    marker = target / ".complete"
    if not marker.exists():
        target.mkdir(parents=True, exist_ok=True)
        for entry in model.files:
            local_path(f"{model.storage_prefix}/{entry['name']}", target / entry["name"])
        marker.touch()
    return target


def kept_bytes(folder: Path) -> int:
    """What storing the folder takes: the files store_folder keeps."""
    return sum((folder / relative).stat().st_size for relative in model_files.kept_files(folder))


def save_upload(upload: Any, target: Path) -> Path:
    """Stream an uploaded file to disk in chunks; its name is never used."""
    limit = settings.LAYERCAKE_MAX_UPLOAD_MB * 1024 * 1024
    written = 0
    with target.open("wb") as sink:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > limit:
                raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
            sink.write(chunk)
    return target


def remove_model_files(model_id: str, prefix: str, files: list[dict[str, Any]]) -> None:
    """A deleted model's files in storage, its local cache and its resident copies; files already gone are fine."""
    delete_stored_files(prefix, files)
    for name in stored_names(prefix):  # whatever else was written under its folder (exports, say)
        default_storage.delete(name)
    try:
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)
    except NotImplementedError:
        pass
    shutil.rmtree(settings.LAYERCAKE_CACHE / "models" / model_id, ignore_errors=True)
    from webapp.playground.services import forget_resident

    forget_resident(model_id)
