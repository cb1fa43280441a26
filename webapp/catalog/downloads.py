"""A model's downloads: its stored files as a zip or one by one, and its proven GGUF exports, streamed chunk by
chunk: never the whole archive (or file) in memory.

The zip holds one top-level folder named after the model, so unzipping it never spills files into the current
folder. Its README.md carries a "Use" section written for that layout (webapp.catalog.cards), and its
checksums.sha256 is adjusted to match, so `sha256sum -c` passes inside the unzipped folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

from django.core.files.storage import default_storage
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.urls import reverse

from jobs.training.checksums import CHECKSUMS_FILE
from webapp.catalog import cards, gguf_export, loading
from webapp.catalog.models import CatalogModel, Kind

CHUNK_BYTES = 1 << 20
# Weights do not compress; storing them keeps the stream cheap on CPU. Text files deflate well.
STORED_SUFFIXES = (".safetensors",)
CARD = "README.md"


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


def folder_name(model: CatalogModel) -> str:
    """The zip's top-level folder: the model's name in ASCII characters safe on every file system and unzip tool."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "-" for c in model.name).strip("-.") or "model"


def zip_name(model: CatalogModel) -> str:
    return f"{folder_name(model)}.zip"


def site_root(request: HttpRequest) -> str:
    """The scheme and host the user reached us on, for download URLs written into the card."""
    return request.build_absolute_uri("/").rstrip("/")


def download_of(model: CatalogModel, site: str) -> cards.Download:
    url = f"{site}{reverse('api-model-download', args=[model.id])}"
    return cards.Download(model.name, folder_name(model), zip_name(model), url)


def stored_text(model: CatalogModel, name: str) -> str | None:
    if stored_file(model, name) is None:
        return None
    with default_storage.open(f"{model.storage_prefix}/{name}", "rb") as handle:
        return str(handle.read().decode("utf-8", errors="replace"))


def loading_facts(model: CatalogModel) -> cards.Loading:
    names = {entry["name"] for entry in model.files}
    adapter_config = stored_text(model, "adapter_config.json") if model.kind == Kind.ADAPTER else None
    config = stored_text(model, "config.json")
    if adapter_config is not None:
        task = loading.task_of_adapter_config(json.loads(adapter_config), json.loads(config) if config else None)
    else:
        task = loading.task_of_config(json.loads(config)) if config else (model.tasks or ["feature_extraction"])[0]
    return cards.Loading(
        task=task,
        is_adapter=adapter_config is not None,
        has_tokenizer=bool(names & {"tokenizer_config.json", "tokenizer.json"}),
        adapter_has_config=adapter_config is not None and "config.json" in names,
    )


def rendered_card(model: CatalogModel, site: str) -> str:
    """The stored model card with a "Use" section for this catalog's downloads (a short card when none is stored)."""
    card = stored_text(model, CARD) or f"# {model.name}\n\n{model.get_kind_display()} from the Layercake catalog.\n"
    base = model.parent if model.kind == Kind.ADAPTER else None
    usage = cards.usage_section(loading_facts(model), download_of(model, site), download_of(base, site) if base else None)
    return cards.with_usage(card, usage)


def rendered_checksums(model: CatalogModel, card: bytes) -> bytes | None:
    """The engine's `sha256sum -c` list with the README.md line matching the card in the zip."""
    text = stored_text(model, CHECKSUMS_FILE)
    if text is None:
        return None
    digest = hashlib.sha256(card).hexdigest()
    lines = [f"{digest}  {CARD}" if line.endswith(f"  {CARD}") else line for line in text.splitlines()]
    return ("\n".join(lines) + "\n").encode()


def stream_zip(model: CatalogModel, site: str = "") -> Iterator[bytes]:
    """The model's files in its save_pretrained layout under one top-level folder, as zip bytes in chunks."""
    sink = ChunkSink()
    folder = folder_name(model)
    card = rendered_card(model, site).encode()
    rendered = {CARD: card, CHECKSUMS_FILE: rendered_checksums(model, card)}
    names = [entry["name"] for entry in model.files]
    when = model.created_at.timetuple()[:6]
    with zipfile.ZipFile(sink, mode="w", allowZip64=True) as archive:
        if CARD not in names:
            archive.writestr(zipfile.ZipInfo(f"{folder}/{CARD}", date_time=when), card, zipfile.ZIP_DEFLATED)
        for entry in model.files:
            # Member names come from the catalog's own file list, written at registration, never from the request.
            info = zipfile.ZipInfo(f"{folder}/{entry['name']}", date_time=when)
            info.compress_type = zipfile.ZIP_STORED if entry["name"].endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            replacement = rendered.get(entry["name"])
            if replacement is not None:
                archive.writestr(info, replacement)
                if ready := sink.drain():
                    yield ready
                continue
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


def stream_file(prefix: str, entry: dict[str, Any]) -> Iterator[bytes]:
    with default_storage.open(f"{prefix}/{entry['name']}", "rb") as source:
        yield from iter(lambda: source.read(CHUNK_BYTES), b"")


def zip_response(model: CatalogModel, site: str = "") -> StreamingHttpResponse:
    response = StreamingHttpResponse(stream_zip(model, site), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{zip_name(model)}"'
    return response


def file_response(model: CatalogModel, name: str) -> StreamingHttpResponse:
    entry = stored_file(model, name)
    if entry is None:
        raise Http404
    return stored_file_response(model.storage_prefix, entry)


def stored_file_response(prefix: str, entry: dict[str, Any]) -> StreamingHttpResponse:
    """One stored file, listed as `entry` ({"name", "size_bytes", "sha256"}) under `prefix`, streamed as an attachment."""
    response = StreamingHttpResponse(stream_file(prefix, entry), content_type="application/octet-stream")
    response["Content-Length"] = str(entry["size_bytes"])
    response["Content-Disposition"] = f'attachment; filename="{entry["name"].rsplit("/", 1)[-1]}"'
    response["X-Content-SHA256"] = entry["sha256"]
    return response


def gguf_exports(model: CatalogModel) -> list[dict[str, Any]]:
    """Per output type, the newest finished export job of the model's owner: a proven file to offer, or a refusal's evidence.

    The jobs come through the model's reverse relation (Job.base_model): the jobs app depends on the catalog,
    not the reverse.
    """
    if model.owner_id is None:
        return []
    latest: dict[str, dict[str, Any]] = {}
    for job in model.jobs.filter(owner_id=model.owner_id).finished_exports():
        output_type = (job.hyperparameters or {}).get("type", "")
        if output_type in latest:
            continue
        export = (job.summary or {}).get("gguf") or {}
        files = {entry["name"]: entry for entry in export.get("files", [])}
        gguf_file = next((entry for name, entry in files.items() if name.endswith(".gguf")), None)
        latest[output_type] = {
            "type": output_type,
            "job": job,
            # Only a succeeded export stores files; a refused one keeps its proof's evidence and its error.
            "offered": gguf_file is not None,
            "file": gguf_file,
            "modelfile": files.get("Modelfile"),
            "proof": (job.metrics or {}).get("gguf_proof"),
            "llama_cpp": export.get("llama_cpp") or {},
            "error": job.error,
        }
    return [latest[key] for key in gguf_export.OUTPUT_TYPES if key in latest]


def gguf_response(model: CatalogModel, owner: Any, output_type: str, name: str) -> StreamingHttpResponse:
    """The proven export's GGUF (name "gguf") or its Ollama Modelfile, streamed; 404 until the owner has one."""
    for export in gguf_exports(model):
        if export["type"] == output_type and export["offered"] and export["job"].owner_id == getattr(owner, "pk", None):
            entry = export["file"] if name == "gguf" else export["modelfile"] if name == "Modelfile" else None
            if entry is not None:
                return stored_file_response(export["job"].summary["gguf"]["prefix"], entry)
    raise Http404
