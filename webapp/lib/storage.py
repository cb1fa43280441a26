"""Local paths for files in storage: transformers and pyarrow read paths, storage may be remote (S3)."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.files.storage import default_storage


def stored_path(name: str) -> Path | None:
    """Where a stored name (file or prefix) lies on local storage; None with remote storage (S3), which has no paths."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # the storage API's answer for remote storage: no local path
        return None


def local_path(name: str, download_to: Path) -> Path:
    """The stored file itself on local storage; otherwise a copy downloaded once to `download_to`."""
    stored = stored_path(name)
    if stored is not None:
        return stored
    if not download_to.exists():
        download_to.parent.mkdir(parents=True, exist_ok=True)
        partial = download_to.with_name(download_to.name + ".part")
        with default_storage.open(name, "rb") as source, partial.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
        partial.replace(download_to)
    return download_to


def stored_names(prefix: str) -> list[str]:
    """Every file name stored under `prefix`, recursively; none when the folder does not exist."""
    try:
        folders, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError, NotImplementedError):
        return []
    names = [f"{prefix}/{name}" for name in files]
    for folder in folders:
        names += stored_names(f"{prefix}/{folder}")
    return names


def stored_bytes(prefix: str) -> int:
    """Bytes of every file stored under `prefix`, recursively; 0 when there is none.

    On S3 (django-storages) one listing answers: without a delimiter it returns every key under the prefix with its
    size, a page per 1,000 keys, where listdir and size() would cost a request per folder and per file.
    """
    from storages.backends.s3 import S3Storage

    if not isinstance(default_storage, S3Storage):
        return sum(default_storage.size(name) for name in stored_names(prefix))
    from storages.utils import clean_name

    # As S3Storage.listdir builds its prefix: under the storage's location, ending with a slash.
    key_prefix = default_storage._normalize_name(clean_name(prefix)).rstrip("/") + "/"
    pages = default_storage.connection.meta.client.get_paginator("list_objects_v2").paginate(
        Bucket=default_storage.bucket_name, Prefix=key_prefix
    )
    return sum(entry["Size"] for page in pages for entry in page.get("Contents", ()))
