"""Two machines and a bucket: a job killed on worker A resumes on worker B from the checkpoint A uploaded.

Each worker has its own LAYERCAKE_HOME and model/data cache, so B never sees A's disk; they share only what
machines share: the database, the broker (Redis in CI; locally the filesystem broker's folder) and the S3 bucket,
served by moto's S3 server.
"""

from __future__ import annotations

import dataclasses
import json
import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import override_settings
from django.utils import timezone

from jobs import services
from jobs.checkpoint_store import MANIFEST_SUFFIX, remote_store, step_of
from jobs.models import Job, Status
from jobs.runner import build_spec
from tests.conftest import wait_for
from tests.jobs.conftest import ready_dataset
from tests.jobs.test_job_on_a_real_worker import FAST_BEATS, job_status
from tests.s3_server import S3Server, moto_server, storages_setting
from webapp.catalog import importing
from webapp.lib.storage import stored_names

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Trainer's state that makes a resume exact, besides the weights.
RESUME_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"}


def job_state(job_id: object) -> str:
    """What a failure message needs: status, progress and the job's events."""
    job = Job.objects.get(pk=job_id)
    events = "; ".join(event.message for event in job.events.order_by("pk"))
    return f"{job.status}, progress {job.progress}, events: {events}"


@pytest.fixture
def s3() -> Iterator[S3Server]:
    with moto_server() as server:
        yield server


def machine(home: Path, bucket: dict[str, str]) -> dict[str, str]:
    """The environment of a worker on a machine of its own."""
    home.mkdir(parents=True)
    # Locally the broker is a folder (under LAYERCAKE_HOME): the one thing besides the database and the bucket that
    # the machines share. In CI it is Redis (REDIS_URL) and this link goes unused.
    (home / "broker").symlink_to(settings.BROKER_DIR)
    return {"LAYERCAKE_HOME": str(home), "LAYERCAKE_CACHE": str(home / "cache"), **bucket, **FAST_BEATS}


# Three times the rows of tests.jobs.conftest.INSTRUCTIONS: 72 steps, so that A is still training well after its first checkpoints are stored.
# With 24 steps A finished in about 10 s, and under CI load it once finished, and deleted its checkpoints, before
# an upload of step 4 was seen.
LONGER = [
    {"instruction": f"Add {a} and {b}.", "input": "", "output": f"{a} plus {b} is {a + b}."}
    for a in range(1, 25) for b in range(1, 6)
]


def start_uninterrupted(job: Job, folder: Path) -> Future[float]:
    """The same job, trained start to end in this process and in a thread that overlaps the workers' run: its
    final loss."""
    from jobs.training.engine import train

    spec = dataclasses.replace(build_spec(job), output_dir=folder / "artifact", checkpoint_dir=folder / "checkpoints")
    return ThreadPoolExecutor(1).submit(lambda: train(spec).metrics["tuned"]["arithmetic"]["loss"])


def test_a_job_killed_on_one_worker_resumes_on_another_from_the_bucket(
    s3: S3Server, start_worker: Any, alice: Any, tiny_causal_lm_dir: Path, tmp_path: Path
) -> None:
    bucket = s3.bucket(prefix="layercake")
    with override_settings(STORAGES=storages_setting(bucket), LAYERCAKE_CACHE=tmp_path / "web-cache"):
        base = importing.import_base_model(str(tiny_causal_lm_dir), name="tiny-llama")
        data = ready_dataset(alice, LONGER, "arithmetic")
        hyperparameters = {"epochs": 1.5, "batch_size": 2, "save_steps": 2, "packing": False}
        job = services.create_job(services.plan_job(alice, base.id, [data.id], "lora", hyperparameters=hyperparameters))
        store = remote_store(job)
        uninterrupted = start_uninterrupted(job, tmp_path / "uninterrupted")

        first = start_worker(extra_env=machine(tmp_path / "a", bucket))
        wait_for(
            lambda: any(step >= 4 for step in store.complete()), timeout=120, interval=0.1,
            message=f"no checkpoint reached the bucket ({job_state(job.pk)}):\n{first.output()[-4000:]}",
        )
        first.kill(signal.SIGKILL)
        first.process.wait(timeout=10)
        killed_at = store.complete()[-1]
        total = Job.objects.get(pk=job.pk).progress["total_steps"]
        assert killed_at < total, "the kill must land mid-training"
        manifest_name = f"{store.prefix}/checkpoint-{killed_at}{MANIFEST_SUFFIX}"
        with default_storage.open(manifest_name) as handle:
            assert RESUME_STATE <= {entry["name"] for entry in json.loads(handle.read())["files"]}
        assert (timezone.now() - default_storage.get_modified_time(manifest_name)).total_seconds() <= 60
        # Pruned as on A's disk: two complete checkpoints at most, nothing older left behind.
        kept = store.complete()
        assert len(kept) <= 2
        stored = {Path(name).relative_to(store.prefix).parts[0].removesuffix(MANIFEST_SUFFIX) for name in stored_names(store.prefix)}
        assert min(step_of(folder) for folder in stored) == kept[0], stored

        second = start_worker(extra_env=machine(tmp_path / "b", bucket))
        with override_settings(LAYERCAKE_STALE_JOB_SECONDS=3):
            wait_for(lambda: services.recover_stale_jobs() or job_status(job.pk) != Status.RUNNING, timeout=30, interval=0.5,
                     message="the stale job was not re-queued")
        wait_for(lambda: job_status(job.pk) in {"succeeded", "failed"}, timeout=180, interval=0.5,
                 message=f"the resumed job did not finish:\n{second.output()[-4000:]}")
        job.refresh_from_db()
        assert job.status == Status.SUCCEEDED, job.error
        assert job.attempt == 2 and job.worker.startswith(second.name)
        assert job.events.filter(message=f"Resuming from the checkpoint of step {killed_at}, fetched from storage.").exists()
        # From the newest complete checkpoint at the kill: no step before it trained twice.
        assert job.summary["resumed_from_step"] == killed_at
        assert job.summary["global_step"] == total
        # The worker deletes them just after recording the success.
        wait_for(lambda: stored_names(store.prefix) == [], timeout=10, interval=0.2,
                 message="a succeeded job's checkpoints stay in the bucket")
    # The same loss as the run that was never interrupted (tests/training/test_resume_after_kill.py's tolerance).
    assert abs(job.metrics["tuned"]["arithmetic"]["loss"] - uninterrupted.result(timeout=120)) < 1e-3
