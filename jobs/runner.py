"""Runs one job on a worker: builds the TrainingSpec from the row, calls the engine, records the outcome.

Called by the Celery task and by `manage.py finetune` alike.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from jobs.models import FailureReason, Job, Kind, Status
from jobs.reporting import Heartbeat, JobReporter
from jobs.training import DatasetFiles, Hyperparameters, SpecError, TrainingSpec
from webapp.catalog import services as catalog
from webapp.datasets.services import local_normalized_files
from webapp.lib.errors import LayercakeError

logger = logging.getLogger(__name__)


def job_folder(job: Job, name: str) -> Path:
    """A folder for the job's files that outlives the worker process (checkpoints must survive it).

    On local storage it lies inside storage itself; with remote storage checkpoints stay on the
    worker's disk (a re-queued job then resumes only on the same machine, else it starts over).
    """
    try:
        folder = Path(default_storage.path(f"{job.storage_prefix}/{name}"))
    except NotImplementedError:
        folder = settings.LAYERCAKE_HOME / "jobs" / str(job.pk) / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_spec(job: Job) -> TrainingSpec:
    datasets = []
    for dataset in job.datasets.order_by("created_at"):
        files = local_normalized_files(dataset)
        datasets.append(DatasetFiles(name=dataset.name, train=files["train"], validation=files.get("validation")))
    return TrainingSpec(
        base_model_dir=job.base_model.local_dir(),
        task=job.task,
        method=job.method,
        datasets=datasets,
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
            else:
                train(job)
    except catalog.MergeDrift as error:
        logger.warning("job %s: merge refused: %s", job.pk, error)
        job.fail(str(error), FailureReason.INVALID, evidence={"merge_proof": error.evidence})
    except (SpecError, LayercakeError) as error:
        logger.warning("job %s: invalid: %s", job.pk, error)
        job.fail(str(error), FailureReason.INVALID)
    except Exception as error:
        logger.exception("job %s: failed", job.pk)
        job.fail(f"{type(error).__name__}: {error}\n\n{traceback.format_exc(limit=8)}", FailureReason.ERROR)


def train(job: Job) -> None:
    from jobs.training import train as run_training

    spec = build_spec(job)
    logger.info("job %s: training %s/%s on %s (attempt %d)", job.pk, job.task, job.method, job.base_model.name, job.attempt)
    result = run_training(spec, JobReporter(job))
    if result.stopped or result.artifact_dir is None:
        logger.info("job %s: stopped on request at step %d", job.pk, result.summary.global_step)
        # Partial checkpoints never reach the catalog.
        shutil.rmtree(spec.output_dir, ignore_errors=True)
        job.mark_cancelled()
        return
    model = catalog.register_derived_model(
        result.artifact_dir,
        name=f"{job.base_model.name}-{job.method}-{str(job.pk)[:8]}",
        kind=result.kind,
        parent=job.base_model,
        owner=job.owner,
        metrics={**result.metrics, "method": job.method, "task": job.task},
        tasks=[job.task],
        family=job.base_model.family,
    )
    summary = {key: value for key, value in vars(result.summary).items()}
    if not job.succeed(model, result.metrics, summary):
        logger.warning("job %s: finished but was no longer running (%s)", job.pk, job.status)
    cleanup(job, spec)


def merge(job: Job) -> None:
    model = catalog.merge_adapter(job.base_model, job.owner)
    job.succeed(model, model.metrics.get("merge_proof", {}), {})


def cleanup(job: Job, spec: TrainingSpec) -> None:
    """After success the catalog holds the artifact: the job's working copies can go."""
    if job.status == Status.SUCCEEDED:
        shutil.rmtree(spec.output_dir, ignore_errors=True)
        shutil.rmtree(spec.checkpoint_dir, ignore_errors=True)
