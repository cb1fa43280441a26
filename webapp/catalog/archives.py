"""Unpacking uploaded model zips safely (plain Python): no traversal, no links, no bombs, safetensors only."""

from __future__ import annotations

import re
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from webapp.catalog.model_files import KEPT_SUFFIXES
from webapp.lib.errors import LayercakeError, RowError

MAX_MEMBERS = 2000
# A member that inflates more than this many times is a bomb, not a model (safetensors barely compress).
MAX_RATIO = 200
RATIO_CHECK_FROM_BYTES = 1 << 20
# Many members just under the per-member check add up: the whole archive may not inflate more than this
# (real weights compress to 80-95% of their size; a folder of zero-filled members compresses a thousandfold).
MAX_TOTAL_RATIO = 20
TOTAL_RATIO_CHECK_FROM_BYTES = 32 << 20
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".h5", ".msgpack", ".onnx")
# Member names only pass if they look like a model folder's files: plain names, forward slashes, no dot-dirs.
SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*$")


def refuse(message: str, problems: list[str] | None = None) -> LayercakeError:
    return LayercakeError(message, [RowError(None, "file", problem) for problem in problems or []])


def common_top_folder(names: list[str]) -> str:
    """A zip of a folder holds `folder/config.json`; the folder itself is dropped."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return tops.pop() + "/"
    return ""


def checked_members(archive: zipfile.ZipFile, max_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """The members to extract with their checked relative names; raises with every problem found."""
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise refuse(f"The zip holds {len(infos)} entries; a model folder has far fewer (at most {MAX_MEMBERS}).")
    problems: list[str] = []
    files = []
    for info in infos:
        name = info.filename
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(f"{name!r} is a symbolic link")
            continue
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
            problems.append(f"{name!r} is an absolute path")
            continue
        if ".." in PurePosixPath(name).parts:
            problems.append(f"{name!r} points outside the folder")
            continue
        if info.is_dir():
            continue
        files.append(info)
    top = common_top_folder([info.filename for info in files])
    kept = []
    total = 0
    for info in files:
        relative = info.filename[len(top):]
        if relative.endswith(PICKLE_SUFFIXES):
            problems.append(f"{relative!r} is a pickle-based format; only safetensors weights are accepted")
            continue
        if any(part.startswith(".") for part in relative.split("/")) or relative.startswith("__MACOSX"):
            continue
        if PurePosixPath(relative).suffix not in KEPT_SUFFIXES:
            continue
        if not SAFE_NAME.match(relative):
            problems.append(f"{relative!r} has characters a model file name does not need")
            continue
        if info.file_size > RATIO_CHECK_FROM_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            problems.append(f"{relative!r} inflates {info.file_size // max(info.compress_size, 1)} times: a zip bomb")
            continue
        total += info.file_size
        kept.append((info, relative))
    if total > max_bytes:
        problems.append(f"it unpacks to {total} bytes, more than the {max_bytes} allowed")
    packed = sum(info.compress_size for info, _ in kept)
    if total > TOTAL_RATIO_CHECK_FROM_BYTES and total > MAX_TOTAL_RATIO * max(packed, 1):
        problems.append(
            f"its {len(kept)} files inflate {total // max(packed, 1)} times in all ({packed} bytes to {total}): a zip bomb"
        )
    if problems:
        raise refuse("The zip was refused: " + problems[0] + ".", problems)
    if not kept:
        raise refuse("The zip holds no model files (safetensors weights and their json configs).")
    return kept


def extract_model_zip(zip_path: Path, destination: Path, max_bytes: int) -> Path:
    """Unpack the checked members into `destination`, counting real bytes (headers can lie)."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise refuse("The file is not a zip archive.") from None
    try:
        with archive:
            return _extract(archive, destination, max_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as error:
        # A lying CRC, a truncated member, an unsupported compression or encryption: the archive is damaged.
        raise refuse(f"The zip is damaged or unsupported ({str(error)[:120]}): zip the model folder again.") from None


def _extract(archive: zipfile.ZipFile, destination: Path, max_bytes: int) -> Path:
    written = 0
    for info, relative in checked_members(archive, max_bytes):
        target = destination.joinpath(*relative.split("/"))
        if destination.resolve() not in target.resolve().parents:
            raise refuse(f"The zip was refused: {relative!r} points outside the folder.")
        target.parent.mkdir(parents=True, exist_ok=True)
        member_bytes = 0
        with archive.open(info) as source, target.open("wb") as sink:
            for block in iter(lambda: source.read(1 << 20), b""):
                member_bytes += len(block)
                written += len(block)
                if member_bytes > info.file_size or written > max_bytes:
                    raise refuse(f"The zip was refused: {relative!r} unpacks to more than its header says.")
                sink.write(block)
    return destination
