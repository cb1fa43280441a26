"""Job operations shared by the wizard, the API, `manage.py finetune` and the periodic checks.

Validation happens here, before a row exists: a job that is created can run.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.exporting import check_export, check_room_for_export, expected_export_bytes
from jobs.models import FailureReason, Job, Kind, Priority, Status, Worker, gpu_queue
from jobs.training import Hyperparameters, SpecError, registry, resolve_hyperparameters
from jobs.training.execution import Capabilities, Execution
from jobs.training.memory import (
    MemoryEstimate,
    ModelShape,
    describe_bytes,
    fit_to_memory,
    minimum_worker_memory,
    usable_memory,
)
from jobs.training.spec import RunPlan
from webapp.accounts import quota
from webapp.catalog.models import CatalogModel
from webapp.datasets import kinds
from webapp.datasets.models import Dataset
from webapp.datasets.models import Status as DatasetStatus
from webapp.lib.background import send_after_commit
from webapp.lib.errors import LayercakeError, RowError

logger = logging.getLogger(__name__)

# Training throughput assumed for the time estimate (model FLOPs per second actually achieved). CPU: SmolLM2-135M
# LoRA on 2 cores reached 1.3e11 idle and 7e10 with other jobs on the cores (docs/benchmarks.md, issue 13).
ASSUMED_FLOPS = {"cpu": 8.0e10, "cuda": 1.0e14}
# Reading the model and preparing the data, before the first batch: a fixed cost plus reading the weights.
LOADING_SECONDS = {"cpu": 10.0, "cuda": 20.0}
READ_BYTES_PER_SECOND = 200e6


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


def online_queues() -> set[str]:
    """The queues that at least one online worker consumes."""
    return {queue for worker in online_workers() for queue in worker.queues or []}


def task_methods(model: CatalogModel, task: str) -> dict[str, str]:
    """Each method of the ladder -> "" when it can run for this model and task, else the reason why not."""
    reasons = {}
    gpu_online = any(worker.has_gpu for worker in online_workers())
    for method in registry.METHODS:
        if method not in registry.task(task).methods:
            reasons[method] = f"not available for the {task} task"
        elif registry.method(method).needs_cuda and not gpu_online:
            reasons[method] = f"{registry.method(method).label} needs a CUDA GPU worker, and none is online"
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
    run: RunPlan,
) -> dict[str, Any]:
    """Memory, rows, steps, trainable parameters and wall time per phase before launch.

    Rows, steps and parameters are counts (the engine's own code, `plan_run`); memory and time are estimates.
    """
    device = execution.device
    mean_tokens = mean_token_length(datasets, int(hp["max_length"]))
    packed = bool(hp["packing"]) and execution.packing_strategy is not None
    # A packed sequence is filled up to max_length; an unpacked one is a row.
    tokens_per_example = int(hp["max_length"]) if packed and run.train_examples < run.train_rows else mean_tokens
    processes = int(hp["num_processes"])
    sequences = run.steps * int(hp["batch_size"]) * int(hp["gradient_accumulation_steps"]) * processes
    tokens = min(sequences, math.ceil(float(hp["epochs"]) * run.train_examples)) * tokens_per_example
    # Per parameter and token: 2 FLOPs forward, 2 backward to the activations, 2 more for the weight gradients of the
    # share that trains (LoRA ~4 in all, full 6); recomputing activations adds another forward (+2). An
    # evaluation is a forward alone (2).
    share = run.trainable_parameters / max(run.total_parameters, 1)
    flops_per_token = (4 + 2 * share + (2 if execution.activation_checkpointing else 0)) * base_model.parameter_count
    # Several GPUs share the work; several CPU processes share the same cores.
    flops = ASSUMED_FLOPS[device] * (processes if device == "cuda" else 1)
    loading = LOADING_SECONDS[device] + 4 * base_model.parameter_count / READ_BYTES_PER_SECOND
    phases = {
        "loading": loading,
        "evaluating_base": run.eval_rows * mean_tokens * 2 * base_model.parameter_count / flops,
        "training": tokens * flops_per_token / flops,
        "evaluating": run.eval_rows * mean_tokens * 2 * base_model.parameter_count / flops,
        "saving": max(5.0, loading / 2),
    }
    return {
        "memory": memory.to_dict(),
        "execution": execution.describe(),
        "trainable_parameters": run.trainable_parameters,
        "total_parameters": run.total_parameters,
        "train_rows": run.train_rows,
        "train_examples": run.train_examples,
        "steps": run.steps,
        "eval_rows": run.eval_rows,
        "eval_max_rows": int(hp["eval_max_rows"]),
        "counts_exact": run.exact,
        "datasets": [vars(entry) for entry in run.datasets],
        "tokens": int(tokens),
        "phases": {name: int(round(value)) for name, value in phases.items()},
        "seconds": int(round(sum(phases.values()))),
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


def head_size(task: str, datasets: Sequence[Any]) -> int:
    """Outputs of the task's head, as the engine will build it: fixed by the task (regression: one), else one per
    distinct label over all the datasets (their profiles list the commonest labels and count them all; several
    datasets count their shared labels once). Two where no profile says: a task without labels has no head to size."""
    fixed = registry.task(task).head_config.get("num_labels")
    if fixed:
        return int(fixed)
    kind = kinds.of_task(task)
    names: set[str] = set()
    most = 0
    for dataset in datasets:
        listed, counted = kind.label_names(dataset.profile or {})
        names |= listed
        most = max(most, counted)
    return max(len(names), most) or 2


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
        missing = [name for name in dataset.normalized_files().values() if not default_storage.exists(name)]
        if missing:
            raise invalid(
                f"Dataset '{dataset.name}' lost its checked copy in storage ({len(missing)} file(s) missing): "
                "use “Save and check again” on its page, or upload it again.",
                "dataset",
            )
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
    if method not in registry.METHODS:
        raise invalid(f"Unknown method '{method}'; choose one of {', '.join(registry.METHODS)}.", "method")
    reason = task_methods(base_model, task)[method]
    if reason:
        raise invalid(f"The {method} method cannot run here: {reason}.", "method")
    if method == "prompt_tuning" and not hyperparameters.get("prompt_init_text"):
        raise invalid("Prompt tuning starts from a prompt you write: give hyperparameters.prompt_init_text.", "hyperparameters")
    # A full model comes out about the base's size: refused (413) now if it would not fit the owner's quota.
    quota.check_room(owner, quota.expected_result_bytes(base_model, method), f"The model this {method} job makes")
    try:
        resolved = resolve_hyperparameters(task, method, base_model.parameter_count, hyperparameters).to_dict()
    except SpecError as error:
        raise LayercakeError(
            error.messages[0], [RowError(None, "hyperparameters", message) for message in error.messages]
        ) from error

    workers = online_workers()
    gpu_workers = [worker for worker in workers if worker.has_gpu]
    needs_gpu = registry.method(method).needs_cuda
    hardware = "gpu" if gpu_workers or needs_gpu else "cpu"
    device = "cuda" if hardware == "gpu" and gpu_workers else "cpu"
    processes = int(resolved["num_processes"])
    queue = gpu_queue(processes) if hardware == "gpu" else "cpu"
    candidates = hosts(workers, hardware, queue, device, processes)
    largest = max((worker.memory_bytes for worker in candidates), default=0)
    # Each process holds a whole copy of the run: on a GPU its own device's memory, on the CPU a share of the RAM.
    share = processes if device == "cpu" else 1
    try:
        fit = fit_to_memory(
            ModelShape.from_dir(base_model.local_dir()),
            task,
            method,
            Hyperparameters(**resolved),
            device,
            usable_memory(device, largest) // share if largest else 1 << 62,
            capabilities=_worker_capabilities(candidates) if device == "cuda" else None,
            base_model_dir=base_model.local_dir(),
            num_labels=head_size(task, datasets),
            allow_shorter_max_length=allow_shorter_max_length,
        )
    except SpecError as error:
        raise invalid(error.messages[0], "base_model") from error
    warnings = list(fit.execution.notes)
    if candidates and not fit.fits:
        need = describe_bytes(fit.estimate.total * share)
        have = describe_bytes(usable_memory(device, largest))
        shorter = "" if allow_shorter_max_length else " Allow a shorter max_length, or"
        raise invalid(
            f"This job needs about {need} even with activation checkpointing and a micro-batch of "
            f"{fit.hyperparameters.batch_size}, but the largest {queue} worker can give a run {have}.{shorter} "
            f"use LoRA/QLoRA, or add a {queue} worker with at least "
            f"{describe_bytes(minimum_worker_memory(device, fit.estimate.total * share))}.",
            "hyperparameters",
        )
    if not candidates:
        warnings.append(f"No {queue} worker is online right now: the job will wait in the queue until one starts.")
    resolved = fit.hyperparameters.to_dict()
    run = plan_run_for(base_model, datasets, method, task, fit.hyperparameters, fit.execution, warnings)
    own_splits = [entry.name for entry in run.datasets if entry.validation_source == "dataset"]
    if "eval_fraction" in hyperparameters and own_splits:
        warnings.append(
            f"eval_fraction does not apply to {', '.join(own_splits)}: the dataset has its own validation split, "
            "made when it was uploaded; that split is used as it is."
        )
    estimate = estimate_job(base_model, datasets, method, task, resolved, fit.estimate, fit.execution, run)
    estimate["changes"] = list(fit.changes)
    estimate["allow_shorter_max_length"] = allow_shorter_max_length
    return JobPlan(owner, base_model, datasets, method, task, hyperparameters, resolved, estimate, queue, warnings)


def hosts(workers: list[Worker], hardware: str, queue: str, device: str, processes: int) -> list[Worker]:
    """The online workers that can run a job of `queue`; LayercakeError when some serve its hardware but none has
    room for its `processes` (a GPU each, or a core each on the CPU)."""
    serving = [worker for worker in workers if hardware in worker.queues]
    if processes <= 1:
        return serving
    able = [worker for worker in serving if queue in worker.queues and worker.process_slots(device) >= processes]
    if serving and not able:
        most = max(worker.process_slots(device) for worker in serving)
        unit = "GPU" if device == "cuda" else "core"
        raise invalid(
            f"This job asks for {processes} processes, one per {unit}, but the largest {hardware} worker online has "
            f"{most} {unit}{'s' if most != 1 else ''}. Ask for at most {most} (num_processes), or add a {hardware} "
            f"worker with {processes} {unit}s.",
            "hyperparameters",
        )
    return able


def plan_run_for(
    base_model: CatalogModel,
    datasets: list[Dataset],
    method: str,
    task: str,
    hp: Hyperparameters,
    execution: Execution,
    warnings: list[str] | None = None,
) -> RunPlan:
    """The engine's count of the run's rows, sequences, steps and parameters (`jobs.training.engine.plan_run`),
    over the datasets in the order the worker reads them; its warnings (rows max_length leaves out) go to
    `warnings` when given."""
    from jobs.runner import dataset_files
    from jobs.training.engine import plan_run

    ordered = sorted(datasets, key=lambda dataset: dataset.created_at)
    try:
        return plan_run(base_model.local_dir(), task, method, dataset_files(ordered), hp, execution, notes=warnings)
    except SpecError as error:
        raise LayercakeError(
            error.messages[0], [RowError(None, "dataset", message) for message in error.messages]
        ) from error


def valid_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def create_job(
    plan: JobPlan,
    retry_of: Job | None = None,
    send: bool = True,
    submit_token: str | None = None,
    priority: int = Priority.NORMAL,
) -> Job:
    """Create the row and send it to its queue once the transaction commits (`send=False`: the caller runs it).

    A `submit_token` makes the submit idempotent: the same owner submitting the same token again (the
    review page after Back, a double click, an API client retrying) gets the job created the first time.
    """
    if submit_token and (existing := submitted_job(plan.owner, submit_token)) is not None:
        return existing
    try:
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
                priority=priority,
                retry_of=retry_of,
                submit_token=submit_token or "",
            )
            job.datasets.set(plan.datasets)
            if send:
                enqueue(job)
    except IntegrityError:
        # Two submits with one token raced: the first one's job is the answer to both.
        if submit_token and (existing := submitted_job(plan.owner, submit_token)) is not None:
            return existing
        raise
    return job


def submitted_job(owner: Any, submit_token: str | None) -> Job | None:
    """The job that `owner` already submitted with this token, if any."""
    if not submit_token:
        return None
    return Job.objects.for_user(owner).filter(submit_token=submit_token).first()


def enqueue(job: Job) -> None:
    """Send the job's task after commit, with its task id stored on the row.

    A broker failure leaves the job waiting: `resend_waiting_jobs` sends it again once the broker is back
    (a job keeps its place in its queue; failing it would throw that away).
    """
    from jobs.tasks import run_job

    job.record_task_id(send_after_commit(run_job, [str(job.pk)], queue=job.queue))
    Job.objects.filter(pk=job.pk).update(enqueued_at=timezone.now())


def start_merge(model: CatalogModel, owner: Any) -> Job:
    """The "Make a full model" action: a `merge` job that merges an adapter into its base on a worker
    (jobs.merging.merge_adapter) and registers the result as a `merged` model."""
    if not model.can_merge or model.parent is None:  # a base, a full model, a soft prompt (an input, not a weight)
        raise invalid(f"{model.name} is not a mergeable adapter: only LoRA-style adapters merge into their base.", "model")
    quota.check_room(owner, model.parent.size_bytes, "The merged model")  # about its base's size
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner, kind=Kind.MERGE, base_model=model, method="merge", task=(model.tasks or [""])[0], queue="cpu"
        )
        enqueue(job)
    return job


def start_export(model: CatalogModel, owner: Any, output_type: Any) -> Job:
    """The "Export to GGUF" action: an `export` job that writes the model as GGUF (+ Ollama Modelfile), proves it
    and stores it for download on a worker (jobs.exporting.export_gguf). What cannot be exported is refused now."""
    check_export(model, output_type)
    check_room_for_export(model, owner, output_type, expected_export_bytes(model, output_type))
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner, kind=Kind.EXPORT, base_model=model, method="export", task=(model.tasks or ["sft"])[0],
            queue="cpu", hyperparameters={"type": output_type}, requested_hyperparameters={"type": output_type},
        )
        enqueue(job)
    return job


def cancel(job: Job) -> Job:
    """A waiting job ends at once, a running one stops at its next step; a finished one is a 409."""
    if not job.cancel():
        job.refresh_from_db()
        if job.is_final:
            raise LayercakeError(f"This job already ended ({job.status}): there is nothing to cancel.", status=409)
    return job


def retry(job: Job) -> Job:
    """A new attempt with the same spec; the original stays as it ended."""
    if not job.is_final or job.status == Status.SUCCEEDED:
        raise LayercakeError(f"Only failed or cancelled jobs can be retried; this one is {job.status}.", status=409)
    if job.base_model is None:
        raise LayercakeError("The model this job started from was deleted: start a new job on another model.", status=409)
    if job.kind == Kind.MERGE:
        return start_merge(job.base_model, job.owner)
    if job.kind == Kind.EXPORT:
        return start_export(job.base_model, job.owner, (job.hyperparameters or {}).get("type"))
    plan = plan_job(
        job.owner,
        job.base_model_id,
        [str(d.pk) for d in job.datasets.all()],
        job.method,
        job.task,
        job.requested_hyperparameters,
        allow_shorter_max_length=bool((job.estimate or {}).get("allow_shorter_max_length")),
    )
    return create_job(plan, retry_of=job, priority=job.priority)


def claim_next_job(queue: str, worker: str) -> Job | None:
    """Start the job that `queue`'s workers must take first: the highest priority, then the oldest submitted.

    Messages say "a job is waiting in this queue"; the database decides which one. Broker order is not
    submission order: kombu's filesystem transport names messages after a per-boot monotonic clock and sorts
    the names as strings, re-sent and redelivered messages go to the back, and a worker may hold a prefetched
    one. Every waiting job has sent at least one message to its queue, and each message starts at most one
    job, so none is left behind.
    """
    while (job := Job.objects.in_queue(queue).first()) is not None:
        if job.start(worker):
            return job
        # Another worker took it between the read and the conditional update: try the next one.
    return None


@dataclass(frozen=True)
class QueuePosition:
    """What stands between something waiting in a queue and a worker: counts only, never others' jobs."""

    queue: str
    ahead: int
    running: int
    workers: int

    def describe(self) -> str:
        if self.ahead == 0:
            lead = "Next in the queue" if self.running else "First in the queue"
        else:
            lead = f"{self.ahead} job{'s' if self.ahead != 1 else ''} ahead of this one"
        running = f"{self.running} running" if self.running else "none running"
        if not self.workers:
            return f"{lead} on the {self.queue} queue ({running}); no {self.queue} worker is online, it starts when one does."
        return f"{lead} on the {self.queue} queue ({running}, {self.workers} worker{'s' if self.workers != 1 else ''} online)."


def queue_position(queue: str, job: Job | None = None) -> QueuePosition:
    """What is ahead in `queue`: of a waiting `job`, or (no job) of anything that joins the queue now.

    Jobs of every owner count (they share the workers); the answer holds counts only.
    """
    waiting = Job.objects.in_queue(queue)
    ahead = Job.objects.ahead_of(job) if job is not None else waiting
    return QueuePosition(
        queue=queue,
        ahead=ahead.count(),
        running=Job.objects.running().filter(queue=queue).count(),
        workers=sum(1 for worker in online_workers() if queue in worker.queues),
    )


def _resume_elsewhere(jobs: Any, why: str) -> list[Job]:
    """Re-queue running jobs whose worker is gone, to resume from their last checkpoint (or fail after too many)."""
    recovered = []
    for job in jobs:
        if job.attempt >= settings.LAYERCAKE_MAX_ATTEMPTS:
            job.fail(
                f"Its worker stopped answering {job.attempt} times (last: {job.worker}); possibly out of memory.",
                FailureReason.WORKER_LOST,
            )
            continue
        if job.requeue(f"worker {job.worker} {why}; resuming from the last checkpoint"):
            logger.warning("job %s: worker %s %s, re-queued for attempt %d", job.id, job.worker, why, job.attempt + 1)
            with transaction.atomic():
                enqueue(job)
            recovered.append(job)
    return recovered


def recover_stale_jobs() -> list[Job]:
    """Running jobs whose worker stopped heartbeating: re-queue them to resume from their last checkpoint."""
    return _resume_elsewhere(Job.objects.stale(settings.LAYERCAKE_STALE_JOB_SECONDS), "stopped heartbeating")


def recover_jobs_of_restarted_worker(hostname: str) -> list[Job]:
    """A worker that just started runs nothing yet: jobs still running under its name lost their process.

    The supervisor restarts a killed worker within seconds under the same name, so this finds its job long
    before the heartbeat goes stale.
    """
    return _resume_elsewhere(Job.objects.running().filter(worker=hostname), "restarted")


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

