"""Derived models into the catalog: an artifact folder (adapter, full fine-tune, merge) stored and linked to its parent."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings

from jobs.training.checksums import CHECKSUMS_FILE, sha256_of
from webapp.catalog import loading, model_files
from webapp.catalog.deployment import request_deployment_profile
from webapp.catalog.models import CatalogModel, Kind
from webapp.catalog.storing import save_with_files
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)

DERIVED_KINDS = (Kind.ADAPTER, Kind.FULL, Kind.MERGED)


def verify_checksums(folder: Path) -> None:
    """The engine's checksums.sha256 must match the files it lists: a corrupted artifact is refused."""
    listing = folder / CHECKSUMS_FILE
    if not listing.exists():
        return
    bad = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        expected, _, name = line.partition("  ")
        path = folder / name
        if not path.is_file() or sha256_of(path) != expected:
            bad.append(RowError(None, name, "missing or its sha256 differs from checksums.sha256"))
    if bad:
        raise LayercakeError(f"The artifact in {folder.name} does not match its checksums.", bad)


def derived_facts(folder: Path, kind: str, parent: CatalogModel) -> dict[str, Any]:
    """What the catalog records about an artifact folder of the given kind."""
    if kind == Kind.ADAPTER:
        if not (folder / "adapter_config.json").exists() or not list(folder.glob("adapter_model*.safetensors")):
            raise LayercakeError(
                f"{folder.name} is not an adapter: adapter_config.json and adapter_model.safetensors are required."
            )
        count, dtype = model_files.count_parameters(folder)  # its own: LoRA matrices, soft prompt, trained heads
        peft_type = str(loading.read_adapter_config(folder).get("peft_type") or "adapter")
        return {
            "architecture": f"{peft_type} adapter on {parent.architecture}",
            "model_type": parent.model_type,
            "parameter_count": count,
            "dtype": dtype,
            "has_chat_template": model_files.has_chat_template(folder) or parent.has_chat_template,
        }
    facts = model_files.inspect_model_folder(folder)
    return {
        "architecture": facts.architecture,
        "model_type": facts.model_type,
        "parameter_count": facts.parameter_count,
        "dtype": facts.dtype,
        "has_chat_template": facts.has_chat_template,
    }


def register_derived_model(
    artifact_dir: Path,
    *,
    name: str,
    kind: str,
    parent: CatalogModel,
    owner: Any,
    metrics: dict,
    task: str,
    family: str | None = None,
) -> CatalogModel:
    """Store an artifact folder (save_pretrained layout) under models/<uuid>/ and link it to its parent.

    Adapters count their own parameters only. Nothing is half-stored on failure.
    """
    artifact_dir = Path(artifact_dir)
    if kind not in DERIVED_KINDS:
        raise LayercakeError(f"A derived model is an adapter, a full model or a merged model, not '{kind}'.")
    verify_checksums(artifact_dir)
    facts = derived_facts(artifact_dir, kind, parent)
    model = CatalogModel(
        owner=owner,
        name=name,
        kind=kind,
        parent=parent,
        family=family or parent.family,
        source=f"derived from {parent.name} ({parent.id})",
        task=task,
        licence=parent.licence,
        metrics=metrics,
        **facts,
    )
    save_with_files(model, artifact_dir)
    logger.info("registered %s %s (%s) from %s, %d parameters", kind, model.name, model.id, parent.id, model.parameter_count)
    if settings.LAYERCAKE_PROFILE_DERIVED_MODELS:  # every derived model gets its deployment table measured
        request_deployment_profile(model)
    return model
