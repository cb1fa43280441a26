"""Job operations shared by the wizard, the API, `manage.py finetune` and the periodic checks.

Validation happens here, before a row exists: a job that is created can run.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.models import FailureReason, Job, Kind, Status, Worker
from jobs.training import METHODS, METHODS_BY_TASK, Hyperparameters, SpecError, resolve_hyperparameters
from jobs.training.execution import Capabilities, Execution
from jobs.training.memory import (
    MemoryEstimate,
    ModelShape,
    describe_bytes,
    fit_to_memory,
    minimum_worker_memory,
    usable_memory,
)
from webapp.catalog.models import CatalogModel
from webapp.datasets.models import Dataset
from webapp.datasets.models import Status as DatasetStatus
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)

# One line per method for the wizard: what it trains and what it costs.
METHOD_SUMMARIES = {
    "prompt_tuning": "Learns a soft prompt of a few virtual tokens; the model is untouched. Tiny files, least memory.",
    "lora": "Trains small low-rank adapters beside frozen weights. Small files, low memory, close to full quality.",
    "qlora": "LoRA over a 4-bit base: the least memory for big models. Needs a CUDA GPU worker.",
    "head": "Transfer learning: the base stays frozen and only a new task head trains. Fast, cheap, a solid baseline.",
    "freeze": "Partial fine-tuning: trains only the last layers (and the head). A new full model.",
    "full": "Trains every weight: the most capacity and ~4x the model's size in memory. A new full model.",
}
# Training throughput assumed for the time estimate (model FLOPs per second actually achieved).
ASSUMED_FLOPS = {"cpu": 2.0e10, "cuda": 1.0e14}


@dataclass
class JobPlan:
    """A checked job, ready to be created: everything the form's review page shows."""

    owner: Any
    base_model: CatalogModel
    datasets: list[Dataset]
    method: str
    task: str
    requested_hyperparameters: dict[str, Any]
    hyperparameters: dict[str, Any]
    estimate: dict[str, Any]
    queue: str
    warnings: list[str] = field(default_factory=list)


def invalid(message: str, field_name: str | None = None, details: list[RowError] | None = None) -> LayercakeError:
    return LayercakeError(message, details or ([RowError(None, field_name, message)] if field_name else []))


def online_workers() -> list[Worker]:
    since = timezone.now() - timedelta(seconds=settings.LAYERCAKE_WORKER_OFFLINE_AFTER_SECONDS)
    return list(Worker.objects.filter(stopped_at__isnull=True, last_heartbeat__gte=since))


def task_methods(model: CatalogModel, task: str) -> dict[str, str]:
    """Each method of the ladder -> "" when it can run for this model and task, else the reason why not."""
    reasons = {}
    gpu_online = any(worker.has_gpu for worker in online_workers())
    for method in METHODS:
        if method not in METHODS_BY_TASK.get(task, ()):
            reasons[method] = f"not available for the {task} task"
        elif method == "prompt_tuning" and model.family != "causal_lm":
            reasons[method] = "prompt tuning needs a causal language model"
        elif method == "qlora" and not gpu_online:
            reasons[method] = "QLoRA needs a CUDA GPU worker, and none is online"
        else:
            reasons[method] = ""
    return reasons


def estimate_job(
    base_model: CatalogModel,
    datasets: list[Dataset],
    method: str,
    task: str,
    hp: dict[str, Any],
    memory: MemoryEstimate,
    execution: Execution,
) -> dict[str, Any]:
    """Memory, trainable parameters and wall time before launch (estimates, labelled as such)."""
    device = execution.device
    rows = sum(int(dataset.rows or 0) for dataset in datasets)
    train_rows = rows * (1 - float(hp["eval_fraction"]))
    mean_tokens = mean_token_length(datasets, int(hp["max_length"]))
    tokens = train_rows * mean_tokens * float(hp["epochs"])
    steps = math.ceil(train_rows / max(int(hp["batch_size"]) * int(hp["gradient_accumulation_steps"]), 1)) * float(hp["epochs"])
    # Forward + backward ~ 6 FLOPs per parameter per token; recomputing activations adds another forward (+2).
    flops_per_token = (8 if execution.activation_checkpointing else 6) * base_model.parameter_count
    seconds = tokens * flops_per_token / ASSUMED_FLOPS[device]
    return {
        "memory": memory.to_dict(),
        "execution": execution.describe(),
        "trainable_parameters": memory.trainable_parameters,
        "total_parameters": base_model.parameter_count,
        "train_rows": int(train_rows),
        "steps": int(steps),
        "tokens": int(tokens),
        "seconds": int(seconds) + 5,
        "device": device,
    }


def _worker_capabilities(workers: list[Worker]) -> Capabilities:
    """What the queue's best-equipped worker offers (registered at its start)."""
    merged: dict[str, bool] = {}
    for worker in workers:
        for device in worker.devices:
            for key, value in (device.get("capabilities") or {}).items():
                merged[key] = merged.get(key, False) or bool(value)
    return Capabilities.from_dict(merged)


def mean_token_length(datasets: list[Dataset], max_length: int) -> float:
    """From the datasets' token-length profiles where they have one; a quarter of max_length otherwise."""
    means = []
    for dataset in datasets:
        tokens = (dataset.profile or {}).get("token_lengths") or {}
        if isinstance(tokens, dict) and tokens.get("mean"):
            means.append(min(float(tokens["mean"]), max_length))
    return sum(means) / len(means) if means else max_length / 4


def plan_job(
    owner: Any,
    base_model_id: Any,
    dataset_ids: list[Any],
    method: str,
    task: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    allow_shorter_max_length: bool = False,
) -> JobPlan:
    """Check a requested job end to end and make it fit the workers: raise LayercakeError only when it cannot work.

    A job that does not fit as asked is changed, the cheapest way first (jobs.training.memory.fit_to_memory), and the
    changes are listed in `estimate["changes"]`.
    """
    hyperparameters = dict(hyperparameters or {})
    base_model = CatalogModel.objects.visible_to(owner).filter(pk=base_model_id).first() if valid_uuid(base_model_id) else None
    if base_model is None:
        raise invalid("The base model does not exist (or is not yours).", "base_model")
    if not dataset_ids:
        raise invalid("Pick at least one dataset.", "dataset")
    found = {str(d.id): d for d in Dataset.objects.for_user(owner).filter(pk__in=[i for i in dataset_ids if valid_uuid(i)])}
    datasets = []
    for dataset_id in dataset_ids:
        dataset = found.get(str(dataset_id))
        if dataset is None:
            raise invalid(f"Dataset {dataset_id} does not exist (or is not yours).", "dataset")
        if dataset.status != DatasetStatus.READY:
            raise invalid(f"Dataset '{dataset.name}' is {dataset.status}, not ready: wait for its checks or fix it.", "dataset")
        datasets.append(dataset)
    tasks = {dataset.task for dataset in datasets}
    if task is None or task == "":
        if len(tasks) > 1:
            raise invalid(f"The datasets are shaped for different tasks ({', '.join(sorted(tasks))}); pick one task.", "task")
        task = tasks.pop()
    for dataset in datasets:
        if dataset.task != task:
            raise invalid(
                f"Dataset '{dataset.name}' is {dataset.shape} data, which fits the {dataset.task} task, not {task}.", "dataset"
            )
    if task not in base_model.tasks:
        raise invalid(
            f"{base_model.name} cannot serve the {task} task; it serves {', '.join(base_model.tasks) or 'no task'}.", "task"
        )
    if method not in METHODS:
        raise invalid(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.", "method")
    reason = task_methods(base_model, task)[method]
    if reason:
        raise invalid(f"The {method} method cannot run here: {reason}.", "method")
    if method == "prompt_tuning" and not hyperparameters.get("prompt_init_text"):
        raise invalid("Prompt tuning starts from a prompt you write: give hyperparameters.prompt_init_text.", "hyperparameters")
    try:
        resolved = resolve_hyperparameters(task, method, base_model.parameter_count, hyperparameters).to_dict()
    except SpecError as error:
        raise LayercakeError(
            error.messages[0], [RowError(None, "hyperparameters", message) for message in error.messages]
        ) from error

    workers = online_workers()
    gpu_workers = [worker for worker in workers if worker.has_gpu]
    needs_gpu = method == "qlora"
    queue = "gpu" if gpu_workers or needs_gpu else "cpu"
    device = "cuda" if queue == "gpu" and gpu_workers else "cpu"
    candidates = [worker for worker in workers if queue in worker.queues]
    largest = max((worker.memory_bytes for worker in candidates), default=0)
    labels = sum(len((dataset.profile or {}).get("labels") or {}) for dataset in datasets) or 2
    try:
        fit = fit_to_memory(
            ModelShape.from_dir(base_model.local_dir()),
            task,
            method,
            Hyperparameters(**resolved),
            device,
            usable_memory(device, largest) if largest else 1 << 62,
            capabilities=_worker_capabilities(candidates) if device == "cuda" else None,
            base_model_dir=base_model.local_dir(),
            num_labels=labels,
            allow_shorter_max_length=allow_shorter_max_length,
        )
    except SpecError as error:
        raise invalid(error.messages[0], "base_model") from error
    warnings = list(fit.execution.notes)
    if candidates and not fit.fits:
        need = describe_bytes(fit.estimate.total)
        have = describe_bytes(usable_memory(device, largest))
        shorter = "" if allow_shorter_max_length else " Allow a shorter max_length, or"
        raise invalid(
            f"This job needs about {need} even with activation checkpointing and a micro-batch of "
            f"{fit.hyperparameters.batch_size}, but the largest {queue} worker can give a run {have}.{shorter} "
            f"use LoRA/QLoRA, or add a {queue} worker with at least "
            f"{describe_bytes(minimum_worker_memory(device, fit.estimate.total))}.",
            "hyperparameters",
        )
    if not candidates:
        warnings.append(f"No {queue} worker is online right now: the job will wait in the queue until one starts.")
    resolved = fit.hyperparameters.to_dict()
    estimate = estimate_job(base_model, datasets, method, task, resolved, fit.estimate, fit.execution)
    estimate["changes"] = list(fit.changes)
    estimate["allow_shorter_max_length"] = allow_shorter_max_length
    return JobPlan(owner, base_model, datasets, method, task, hyperparameters, resolved, estimate, queue, warnings)


def valid_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def create_job(plan: JobPlan, retry_of: Job | None = None, send: bool = True) -> Job:
    """Create the row and send it to its queue once the transaction commits (`send=False`: the caller runs it)."""
    with transaction.atomic():
        job = Job.objects.create(
            owner=plan.owner,
            kind=Kind.TRAIN,
            base_model=plan.base_model,
            method=plan.method,
            task=plan.task,
            requested_hyperparameters=plan.requested_hyperparameters,
            hyperparameters=plan.hyperparameters,
            estimate=plan.estimate,
            queue=plan.queue,
            retry_of=retry_of,
        )
        job.datasets.set(plan.datasets)
        if send:
            enqueue(job)
    return job


def enqueue(job: Job) -> None:
    """Send the job's task after commit, with its task id stored on the row first."""
    from jobs.tasks import run_job

    task_id = str(uuid.uuid4())
    job.record_task_id(task_id)
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())
    transaction.on_commit(lambda: run_job.apply_async(args=[str(job.pk)], queue=job.queue, task_id=task_id))


def submit_merge(model: CatalogModel, owner: Any) -> Job:
    """A job that merges an adapter into its base and registers the result as a `merged` model."""
    if model.kind != "adapter" or model.parent is None:
        raise invalid(f"{model.name} is not an adapter: only adapters merge into their base.", "model")
    method = (model.metrics or {}).get("method", "lora")
    if method == "prompt_tuning":
        raise invalid("A prompt-tuning adapter adds virtual tokens; it has no weights to merge into the base.", "model")
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner, kind=Kind.MERGE, base_model=model, method="merge", task=(model.tasks or [""])[0], queue="cpu"
        )
        enqueue(job)
    return job


def cancel(job: Job) -> Job:
    job.cancel()
    return job


def retry(job: Job) -> Job:
    """A new attempt with the same spec; the original stays as it ended."""
    if not job.is_final or job.status == Status.SUCCEEDED:
        raise LayercakeError(f"Only failed or cancelled jobs can be retried; this one is {job.status}.", status=409)
    if job.kind == Kind.MERGE:
        return submit_merge(job.base_model, job.owner)
    plan = plan_job(
        job.owner,
        job.base_model_id,
        [str(d.pk) for d in job.datasets.all()],
        job.method,
        job.task,
        job.requested_hyperparameters,
        allow_shorter_max_length=bool((job.estimate or {}).get("allow_shorter_max_length")),
    )
    return create_job(plan, retry_of=job)


def recover_stale_jobs() -> list[Job]:
    """Running jobs whose worker stopped heartbeating: re-queue them to resume from their last checkpoint."""
    recovered = []
    for job in Job.objects.stale(settings.LAYERCAKE_STALE_JOB_SECONDS):
        if job.attempt >= settings.LAYERCAKE_MAX_ATTEMPTS:
            job.fail(
                f"Its worker stopped answering {job.attempt} times (last: {job.worker}); possibly out of memory.",
                FailureReason.WORKER_LOST,
            )
            continue
        if job.requeue(f"worker {job.worker} stopped heartbeating; resuming from the last checkpoint"):
            logger.warning("job %s: worker lost, re-queued for attempt %d", job.id, job.attempt + 1)
            with transaction.atomic():
                enqueue(job)
            recovered.append(job)
    return recovered


def resend_waiting_jobs() -> list[Job]:
    """The database is the source of truth: waiting jobs whose message may be lost are sent again.

    A duplicate delivery is harmless: `Job.start` lets exactly one delivery win.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.LAYERCAKE_RESEND_AFTER_SECONDS)
    resent = []
    for job in Job.objects.waiting().filter(enqueued_at__lt=cutoff):
        with transaction.atomic():
            enqueue(job)
        resent.append(job)
    return resent

