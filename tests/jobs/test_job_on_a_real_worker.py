"""Jobs on a real Celery worker over the real broker: success with lineage, cancel, and a worker killed mid-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
from django.test import override_settings

from jobs import services
from jobs.models import Job, Status
from tests.conftest import wait_for
from webapp.catalog.models import CatalogModel

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_BEATS = {"LAYERCAKE_HEARTBEAT_SECONDS": "1", "LAYERCAKE_STALE_JOB_SECONDS": "6"}


def job_status(job_id: object) -> str:
    return Job.objects.get(pk=job_id).status


def test_job_submitted_through_the_api_succeeds_and_lands_in_the_catalog(api_alice, start_worker, tiny_lm, sft_data, tmp_path):
    start_worker()
    response = api_alice.post(
        "/api/v1/jobs/",
        {"base_model": str(tiny_lm.id), "dataset": str(sft_data.id), "method": "lora", "hyperparameters": {"epochs": 1, "batch_size": 8}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    job_id = response.json()["id"]
    wait_for(lambda: job_status(job_id) in {"succeeded", "failed"}, timeout=180, message="job did not finish")
    body = api_alice.get(f"/api/v1/jobs/{job_id}/").json()
    assert body["status"] == "succeeded", body["error"]
    assert body["progress"]["step"] == body["progress"]["total_steps"] > 0
    assert body["metrics"]["base"]["arithmetic"]["loss"] > 0  # metrics per dataset, before and after
    assert body["metrics"]["tuned"]["arithmetic"]["loss"] > 0
    assert api_alice.get(f"/api/v1/jobs/{job_id}/events/").json(), "no progress events were recorded"

    model = api_alice.get(f"/api/v1/models/{body['result_model']}/").json()
    assert model["kind"] == "adapter"
    assert model["lineage"] == [str(tiny_lm.id), body["result_model"]]
    assert model["job"] == job_id
    names = {entry["name"] for entry in model["files"]}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= names

    # The stored adapter loads with plain peft in a process that never imports the project.
    folder = CatalogModel.objects.get(pk=body["result_model"]).local_dir()
    script = textwrap.dedent(
        f"""
        import json, sys
        from transformers import AutoModelForCausalLM
        from peft import PeftModel
        base = AutoModelForCausalLM.from_pretrained({str(tiny_lm.local_dir())!r})
        model = PeftModel.from_pretrained(base, {str(folder)!r})
        print(json.dumps({{"peft": type(model).__name__, "modules": sorted(model.peft_config["default"].target_modules)}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["peft"] == "PeftModelForCausalLM" and loaded["modules"]


def long_job(owner, base, dataset, **extra):  # type: ignore[no-untyped-def]
    hyperparameters = {"epochs": 40, "batch_size": 2, "save_steps": 3, **extra}
    return services.create_job(services.plan_job(owner, base.id, [dataset.id], "lora", hyperparameters=hyperparameters))


def test_cancel_of_a_running_job_stops_it_within_ten_seconds(start_worker, alice, tiny_lm, sft_data):
    start_worker(extra_env=FAST_BEATS)
    job = long_job(alice, tiny_lm, sft_data)
    wait_for(lambda: (Job.objects.get(pk=job.pk).progress or {}).get("step", 0) >= 2, timeout=120, message="job did not start")
    import time

    job.cancel()
    asked = time.monotonic()
    wait_for(lambda: job_status(job.pk) == Status.CANCELLED, timeout=10, message="not cancelled within 10 s")
    assert time.monotonic() - asked < 10
    job.refresh_from_db()
    assert job.result_model is None
    assert CatalogModel.objects.filter(kind="adapter").count() == 0


def test_a_job_whose_worker_is_killed_resumes_from_its_checkpoint(start_worker, alice, tiny_lm, sft_data):
    first = start_worker(extra_env=FAST_BEATS)
    # Long enough that step 8 is far from the end: the kill must land mid-training.
    job = long_job(alice, tiny_lm, sft_data, epochs=25)
    wait_for(
        lambda: (Job.objects.get(pk=job.pk).progress or {}).get("step", 0) >= 8,
        timeout=180, message=f"job did not get past its first checkpoints ({Job.objects.get(pk=job.pk).status}):\n{first.output()[-6000:]}",
    )
    first.kill(signal.SIGKILL)
    first.process.wait(timeout=10)
    # The newest complete checkpoint on disk at the kill: the progress row is throttled and may lag the steps.
    from jobs.runner import job_folder
    from jobs.training.engine import last_complete_checkpoint

    newest = last_complete_checkpoint(job_folder(Job.objects.get(pk=job.pk), "checkpoints"))
    assert newest is not None, "no checkpoint was written before the kill"
    killed_at = int(newest.name.rsplit("-", 1)[-1])
    assert job_status(job.pk) == Status.RUNNING  # nobody told the database: the heartbeat tells

    start_worker(extra_env=FAST_BEATS)
    with override_settings(LAYERCAKE_STALE_JOB_SECONDS=6):
        wait_for(lambda: services.recover_stale_jobs() or job_status(job.pk) != Status.RUNNING, timeout=30, interval=1,
                 message="the stale job was not re-queued")
    wait_for(lambda: job_status(job.pk) in {"succeeded", "failed"}, timeout=240, message="resumed job did not finish")
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    assert job.attempt == 2
    resumed_from = job.summary["resumed_from_step"]
    assert resumed_from == killed_at, (resumed_from, killed_at)  # from the newest checkpoint, nothing older
    assert job.summary["global_step"] == job.progress["total_steps"]
