"""Local paths for files in storage: transformers and pyarrow read paths, storage may be remote (S3)."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.core.files.storage import default_storage


def local_path(name: str, download_to: Path) -> Path:
    """The stored file itself on local storage; otherwise a copy downloaded once to `download_to`."""
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:  # the storage API's answer for remote storage: no local path
        pass
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
