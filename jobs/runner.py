"""Runs one job on a worker: builds the TrainingSpec from the row, calls the engine, records the outcome.

Called by the Celery task and by `manage.py finetune` alike.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from jobs.checkpoint_store import (
    delete_remote_checkpoints,
    local_job_folder,
    storage_is_remote,
    synced_checkpoints,
    worker_folder,
)
from jobs.exporting import GgufDrift, export_gguf, remove_replaced_exports
from jobs.merging import MergeDrift, merge_adapter
from jobs.models import ENDED_WITHOUT_RESULT, FailureReason, Job, Kind, Status
from jobs.reporting import Heartbeat, JobReporter
from jobs.training import DatasetFiles, Hyperparameters, SpecError, TrainingSpec
from webapp.catalog.registering import register_derived_model
from webapp.datasets.models import Dataset
from webapp.datasets.services import local_normalized_files
from webapp.lib.errors import LayercakeError

logger = logging.getLogger(__name__)


def job_folder(job: Job, name: str) -> Path:
    """A folder for the job's files that outlives the worker process (checkpoints must survive it).

    On local storage it lies inside storage itself; with remote storage it lies on the worker's disk, and
    jobs.checkpoint_store copies each checkpoint to storage, so a re-queued job resumes on any worker.
    """
    folder = local_job_folder(job.pk, name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dataset_files(datasets: Iterable[Dataset]) -> list[DatasetFiles]:
    """The engine's view of datasets: their normalized Parquet files per split, local to this process."""
    entries = []
    for dataset in datasets:
        files = local_normalized_files(dataset)
        entries.append(DatasetFiles(name=dataset.name, train=files["train"], validation=files.get("validation")))
    return entries


def build_spec(job: Job) -> TrainingSpec:
    if job.base_model is None:  # the catalog refuses to delete a model that a job not yet finished uses
        raise LayercakeError("The model this job starts from was deleted.")
    return TrainingSpec(
        base_model_dir=job.base_model.local_dir(),
        task=job.task,
        method=job.method,
        datasets=dataset_files(job.datasets.order_by("created_at")),
        hyperparameters=Hyperparameters(**job.hyperparameters),
        output_dir=job_folder(job, "artifact"),
        checkpoint_dir=job_folder(job, "checkpoints"),
        device=settings.LAYERCAKE_TRAINING_DEVICE,
        base_model_name=job.base_model.name,
        job_id=str(job.pk),
    )


def execute(job: Job) -> None:
    """Run a job that this worker has started (status running); always leaves it in a final state
    unless the process itself dies (then the stale-job check re-queues it)."""
    try:
        with Heartbeat(job, settings.LAYERCAKE_HEARTBEAT_SECONDS):
            if job.kind == Kind.MERGE:
                merge(job)
            elif job.kind == Kind.EXPORT:
                export(job)
            else:
                train(job)
    except GgufDrift as error:
        logger.warning("job %s: GGUF export refused: %s", job.pk, error)
        job.fail(str(error), FailureReason.INVALID, evidence={"gguf_proof": error.evidence})
    except MergeDrift as error:
        logger.warning("job %s: merge refused: %s", job.pk, error)
        job.fail(str(error), FailureReason.INVALID, evidence={"merge_proof": error.evidence})
    except (SpecError, LayercakeError) as error:
        logger.warning("job %s: invalid: %s", job.pk, error)
        job.fail(str(error), FailureReason.INVALID)
    except Exception as error:
        logger.exception("job %s: failed", job.pk)  # the traceback goes to the worker's log, for the operator
        job.fail(public_error(error, job), FailureReason.ERROR)
    if job.kind == Kind.TRAIN:
        drop_worker_copy(job)


_SERVER_PATH = re.compile(r"(?:/[\w.@+\-]+){2,}/?")


def public_error(error: BaseException, job: Job) -> str:
    """What a user reads about an unexpected failure: the error's own first line, without server paths.

    The whole traceback stays in the worker's log, tagged with the job id (the engine's log lines carry it).
    """
    first_line = (str(error).strip().splitlines() or [""])[0][:500]
    first_line = _SERVER_PATH.sub(lambda match: f"…/{Path(match.group(0).rstrip('/')).name}", first_line)
    what = f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__
    return f"{what}. This is unexpected: retry it, and if it happens again, give your administrator job {job.pk}."


def train(job: Job) -> None:
    from jobs.training import train as run_training
    from jobs.training.launch import run_distributed

    spec = build_spec(job)
    if job.base_model is None:  # the catalog refuses to delete a model that a job not yet finished uses
        raise LayercakeError("The model this job starts from was deleted.")
    logger.info("job %s: training %s/%s on %s (attempt %d)", job.pk, job.task, job.method, job.base_model.name, job.attempt)
    reporter = JobReporter(job)
    with synced_checkpoints(job, spec):
        if spec.hyperparameters.num_processes > 1:
            result = run_distributed(spec, reporter)
        else:
            result = run_training(spec, reporter)
    if result.stopped or result.artifact_dir is None:
        logger.info("job %s: stopped on request at step %d", job.pk, result.summary.global_step)
        # Partial checkpoints never reach the catalog.
        shutil.rmtree(spec.output_dir, ignore_errors=True)
        job.mark_cancelled()
        return
    reporter.phase("registering", 0, 1, None)
    model = register_derived_model(
        result.artifact_dir,
        name=f"{job.base_model.name}-{job.method}-{str(job.pk)[:8]}",
        kind=result.kind,
        parent=job.base_model,
        owner=job.owner,
        metrics={**result.metrics, "method": job.method, "task": job.task},
        task=job.task,
        family=job.base_model.family,
    )
    summary = {key: value for key, value in vars(result.summary).items()}
    if not job.succeed(model, result.metrics, summary):
        logger.warning("job %s: finished but was no longer running (%s)", job.pk, job.status)
    cleanup(job, spec)


def merge(job: Job) -> None:
    if job.base_model is None:  # the catalog refuses to delete a model that a job not yet finished uses
        raise LayercakeError("The model this job starts from was deleted.")
    model = merge_adapter(job.base_model, job.owner)
    job.succeed(model, model.metrics.get("merge_proof", {}), {})


def export(job: Job) -> None:
    if job.base_model is None:
        raise LayercakeError("The model to export was deleted before the export ran.")
    # Under the model's own folder, so deleting the model deletes its exports; one folder per export job.
    prefix = f"{job.base_model.storage_prefix}/gguf/{job.pk}"
    result = export_gguf(job.base_model, job.hyperparameters["type"], prefix, job.owner)
    if job.succeed(None, {"gguf_proof": result["proof"]}, {"gguf": result["export"]}):
        remove_replaced_exports(job)


def drop_worker_copy(job: Job) -> None:
    """With remote storage, a job that ended failed or cancelled leaves nothing on this worker's disk, which no periodic
    check of another machine can reach: the bucket keeps its checkpoints for the retention window (jobs.retention),
    and nothing resumes from this copy (a retry is a new job)."""
    if not storage_is_remote():
        return  # the folder lies in storage itself: the retention rule deletes it
    job.refresh_from_db(fields=["status"])
    if job.status in ENDED_WITHOUT_RESULT:
        shutil.rmtree(worker_folder(job.pk), ignore_errors=True)


def cleanup(job: Job, spec: TrainingSpec) -> None:
    """After success the catalog holds the artifact: the job's working copies can go."""
    if job.status == Status.SUCCEEDED:
        shutil.rmtree(spec.output_dir, ignore_errors=True)
        shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
        delete_remote_checkpoints(job)
