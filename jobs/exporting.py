"""The GGUF export job's work on a worker: write the model as GGUF with its Ollama Modelfile, prove it answers
like the model, store both for download (the fourth way to run a model: llama.cpp / Ollama)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from jobs.merging import MergeDrift, ProofFailed, logit_difference
from jobs.models import Job, JobQuerySet, Status
from jobs.models import Kind as JobKind
from webapp.accounts import quota
from webapp.catalog import gguf_export, merging, profiling
from webapp.catalog.models import CatalogModel, Kind
from webapp.catalog.storing import delete_stored_files, local_dir, store_folder
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)


class GgufDrift(ProofFailed):
    """The GGUF read back does not answer like its source."""


def check_export(model: CatalogModel, output_type: Any) -> None:
    """Refuse, with the reason, what cannot be exported: before a job is queued and again on the worker."""
    if output_type not in gguf_export.OUTPUT_TYPES:
        raise LayercakeError(
            f"GGUF output types are {' and '.join(gguf_export.OUTPUT_TYPES)}; not {output_type!r}. "
            "(q4_K_M needs llama.cpp's own quantizer: the gguf Python library cannot write K-quants.)",
            [RowError(None, "type", f"one of {', '.join(gguf_export.OUTPUT_TYPES)}")],
        )
    if not model.is_derived:
        raise LayercakeError(
            f"{model.name} is a base model: GGUF export is for your fine-tuned models (full, merged, or an adapter merged on the way)."
        )
    if model.kind == Kind.ADAPTER and not model.can_merge:
        raise LayercakeError(f"{model.name} is a prompt-tuning adapter: it has no weights to merge, so no GGUF to write.")
    architecture = model.lineage()[0].architecture if model.kind == Kind.ADAPTER else model.architecture
    try:
        gguf_export.check_exportable({"architectures": [architecture]})
    except gguf_export.ExportRefused as refused:
        raise LayercakeError(str(refused), [RowError(None, "architecture", architecture)]) from None


def expected_export_bytes(model: CatalogModel, output_type: str) -> int:
    """About what the GGUF takes: the weights it holds (an adapter's are its base's, merged) at the type's width."""
    weights = model.lineage()[0].parameter_count if model.kind == Kind.ADAPTER else model.parameter_count
    return int(weights * gguf_export.BYTES_PER_WEIGHT[output_type])


def replaced_exports(model: CatalogModel, owner: Any, output_type: str) -> JobQuerySet:
    """The owner's proven exports of `model` as `output_type`: a newer proven one of that type replaces them (the model
    page offers the newest only)."""
    return Job.objects.filter(
        owner=owner, kind=JobKind.EXPORT, status=Status.SUCCEEDED, base_model=model, hyperparameters__type=output_type
    )


def check_room_for_export(model: CatalogModel, owner: Any, output_type: str, incoming: int) -> None:
    """QuotaExceeded (413) when the export's `incoming` bytes, less those of the export it replaces, do not fit."""
    summaries = replaced_exports(model, owner, output_type).values_list("summary", flat=True)
    replaced = sum(quota.exported_bytes(summary) for summary in summaries)
    quota.check_room(owner, incoming - replaced, f"This {output_type} GGUF export")


def remove_replaced_exports(job: Job) -> None:
    """After `job` stored a proven export: the older ones of its model and type are never offered again, so their
    files go, and their summaries say which job replaced them."""
    assert job.base_model is not None
    older = replaced_exports(job.base_model, job.owner, job.hyperparameters["type"]).exclude(pk=job.pk)
    for old in older.filter(finished_at__lte=job.finished_at):
        export = (old.summary or {}).get("gguf") or {}
        if not export.get("files"):
            continue
        try:
            delete_stored_files(export["prefix"], export["files"])
        except Exception:  # leftovers cost space, not correctness: the new export is stored and offered
            logger.exception("job %s: could not delete the GGUF export %s replaced", job.pk, export["prefix"])
            continue
        Job.objects.filter(pk=old.pk).update(summary={**old.summary, "gguf": {**export, "files": [], "replaced_by": str(job.pk)}})
        logger.info("job %s: GGUF export %s replaced by %s, its files deleted", old.pk, export["prefix"], job.pk)


def export_gguf(model: CatalogModel, output_type: str, prefix: str, owner: Any) -> dict[str, Any]:
    """Write the model as GGUF with its Ollama Modelfile, prove it, and store both under `prefix` if `owner`'s quota
    has room for them (else QuotaExceeded, with nothing stored).

    An adapter is merged into its base first (with the merge proof). A GGUF whose proof fails raises GgufDrift
    with the evidence and stores nothing: it is never offered.
    """
    check_export(model, output_type)
    scratch_root = settings.LAYERCAKE_CACHE if settings.LAYERCAKE_CACHE.exists() else None
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="gguf-") as scratch:
        source = local_dir(model)
        if model.kind == Kind.ADAPTER:
            assert model.parent is not None
            merged_dir = Path(scratch) / "merged"
            merge_proof = merging.merge_and_prove(source, local_dir(model.parent), merged_dir)
            if not merge_proof["passed"]:
                raise MergeDrift(f"Merging {model.name} into its base changed its answers; nothing was exported.",
                                 evidence=merge_proof)
            source = merged_dir
        out_dir = Path(scratch) / "gguf"
        try:
            evidence = gguf_export.export_and_prove(source, out_dir, output_type, model.name)
        except gguf_export.ExportRefused as refused:
            raise LayercakeError(str(refused)) from None
        if not evidence["passed"]:
            details = [
                RowError(None, "gguf_proof", f"prompt {row['prompt']!r}: max logit difference "
                         f"{logit_difference(row['max_abs_logit_diff'])} (bound {evidence['bound']}), same output: "
                         f"{row['outputs_match']}, same token ids: {row['tokenizer_ids_match']}")
                for row in evidence["prompts"] if not row["passed"]
            ]
            logger.warning("GGUF export of %s refused: %s", model.id, evidence)
            raise GgufDrift(f"The {output_type} GGUF of {model.name} does not answer like the model; it was not kept.",
                            details, evidence=evidence)
        gguf_name = evidence["file"]["name"]
        speed = profiling.measure_gguf(out_dir / gguf_name)
        names = [Path(gguf_name), Path("Modelfile")]
        # Checked at submit on an estimate; again here on the real size, as uploads and other jobs may have filled it.
        check_room_for_export(model, owner, output_type, sum((out_dir / name).stat().st_size for name in names))
        # A redelivered job (its worker died while storing) starts from a clean folder.
        delete_stored_files(prefix, [{"name": name.as_posix()} for name in names])
        files = store_folder(out_dir, prefix, names)
    logger.info("exported %s to %s GGUF (%d bytes)", model.id, output_type, evidence["file"]["size_bytes"])
    return {"proof": evidence, "export": {"type": output_type, "files": files, "llama_cpp": speed, "prefix": prefix}}
