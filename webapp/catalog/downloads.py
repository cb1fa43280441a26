"""Streaming a model's stored files as a zip, chunk by chunk: never the whole archive (or file) in memory."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.http import Http404, StreamingHttpResponse

from webapp.catalog.models import CatalogModel

CHUNK_BYTES = 1 << 20
# Weights do not compress; storing them keeps the stream cheap on CPU. Text files deflate well.
STORED_SUFFIXES = (".safetensors",)


class ChunkSink(io.RawIOBase):
    """A write-only, unseekable stream: zipfile writes into it and the generator drains it after each chunk.

    Being unseekable makes zipfile write data descriptors after each member instead of seeking back.
    """

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        block = bytes(data)
        self.chunks.append(block)
        self.written += len(block)
        return len(block)

    def drain(self) -> bytes:
        block = b"".join(self.chunks)
        self.chunks.clear()
        return block


def zip_name(model: CatalogModel) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in model.name).strip("-.") or "model"
    return f"{safe}.zip"


def stream_zip(model: CatalogModel) -> Iterator[bytes]:
    """The model's files in its save_pretrained layout, as zip bytes in chunks of about CHUNK_BYTES."""
    sink = ChunkSink()
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as archive:
        for entry in model.files:
            # Member names come from the catalog's own file list, written at registration, never from the request.
            info = zipfile.ZipInfo(entry["name"], date_time=model.created_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED if entry["name"].endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            info.file_size = entry["size_bytes"]
            with default_storage.open(f"{model.storage_prefix}/{entry['name']}", "rb") as source:
                with archive.open(info, mode="w", force_zip64=entry["size_bytes"] > zipfile.ZIP64_LIMIT) as member:
                    for block in iter(lambda: source.read(CHUNK_BYTES), b""):
                        member.write(block)
                        if ready := sink.drain():
                            yield ready
            if ready := sink.drain():
                yield ready
    if ready := sink.drain():  # the central directory, written on close
        yield ready


def stored_file(model: CatalogModel, name: str) -> dict[str, Any] | None:
    """The catalog's entry for one file, looked up by name in the model's list (so the name never becomes a path)."""
    return next((entry for entry in model.files if entry["name"] == name), None)


def stream_file(model: CatalogModel, entry: dict[str, Any]) -> Iterator[bytes]:
    with default_storage.open(f"{model.storage_prefix}/{entry['name']}", "rb") as source:
        yield from iter(lambda: source.read(CHUNK_BYTES), b"")


def zip_response(model: CatalogModel) -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream_zip(model), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{zip_name(model)}"'
    return response


def file_response(model: CatalogModel, name: str) -> StreamingHttpResponse:
    entry = stored_file(model, name)
    if entry is None:
        raise Http404
    response = StreamingHttpResponse(stream_file(model, entry), content_type="application/octet-stream")
    response["Content-Length"] = str(entry["size_bytes"])
    response["Content-Disposition"] = f'attachment; filename="{entry["name"].rsplit("/", 1)[-1]}"'
    response["X-Content-SHA256"] = entry["sha256"]
    return response
