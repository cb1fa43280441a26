"""SHA-256 of files: the checksums a result folder carries and the catalog checks. No torch, no peft: the webapp
imports it."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHECKSUMS_FILE = "checksums.sha256"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_checksums(folder: Path) -> Path:
    """`sha256sum -c` compatible list of every other file in the folder."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != CHECKSUMS_FILE):
        lines.append(f"{sha256_of(path)}  {path.relative_to(folder).as_posix()}\n")
    target = folder / CHECKSUMS_FILE
    target.write_text("".join(lines), encoding="utf-8")
    return target
