"""Jobs at scale: list and detail latency with 10,000 jobs and 1,000,000 progress events, and
submit-to-running latency with an idle real worker.

Run: .venv/bin/python bench/bench_jobs.py [--jobs 10000 --events 1000000 --submits 20]
(REDIS_URL / DATABASE_URL in the environment switch broker and database, as everywhere.)
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--submits", type=int, default=20)
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="layercake-bench-")
    os.environ.update(LAYERCAKE_HOME=home, SECRET_KEY="bench-only", DJANGO_SETTINGS_MODULE="webapp.settings",
                      LAYERCAKE_PROFILE_DERIVED_MODELS="0", HF_HUB_OFFLINE="1")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from jobs.models import Job, JobEvent, Status
    from jobs.training.tiny import build_tiny_causal_lm
    from tests.jobs.conftest import INSTRUCTIONS, ready_dataset
    from webapp.catalog.importing import import_base_model

    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create_user("bench", password="bench-password-1")
    base = import_base_model(str(build_tiny_causal_lm(Path(home) / "tiny")), name="tiny")
    dataset = ready_dataset(owner, INSTRUCTIONS, "sums")

    started = time.monotonic()
    jobs = Job.objects.bulk_create(
        [Job(owner=owner, base_model=base, method="lora", task="sft", status=Status.SUCCEEDED,
             progress={"step": 100, "total_steps": 100, "loss": 1.0}) for _ in range(args.jobs)],
        batch_size=2000,
    )
    per_job = max(args.events // len(jobs), 1)
    batch: list[JobEvent] = []
    for job in jobs:
        batch += [JobEvent(job=job, step=s, total_steps=per_job, loss=1.0 / (s + 1)) for s in range(per_job)]
        if len(batch) >= 50_000:
            JobEvent.objects.bulk_create(batch, batch_size=10_000)
            batch = []
    JobEvent.objects.bulk_create(batch, batch_size=10_000)
    print(f"seeded {Job.objects.count()} jobs, {JobEvent.objects.count()} events in {time.monotonic() - started:.0f} s")

    client = Client()
    client.force_login(owner)
    pages = {
        "job list (page 1)": "/jobs/",
        "job list (page 100)": "/jobs/?page=100",
        "job list (filtered)": "/jobs/?status=succeeded&method=lora",
        "job detail": f"/jobs/{jobs[len(jobs) // 2].pk}/",
        "job detail (htmx poll)": f"/jobs/{jobs[len(jobs) // 2].pk}/",
        "API job list": "/api/v1/jobs/?status=succeeded",
        "API job detail": f"/api/v1/jobs/{jobs[0].pk}/",
        "API job events": f"/api/v1/jobs/{jobs[0].pk}/events/",
    }
    print("| page | p50 ms | p95 ms | queries |")
    print("|---|---|---|---|")
    for label, url in pages.items():
        headers = {"HTTP_HX_REQUEST": "true"} if "htmx" in label else {}
        timings = []
        for _ in range(args.requests):
            reset_queries()
            with CaptureQueriesContext(connection) as queries:
                t0 = time.perf_counter()
                response = client.get(url, **headers)
                timings.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        print(f"| {label} | {statistics.median(timings):.1f} | {percentile(timings, 0.95):.1f} | {len(queries)} |")

    if args.submits:
        submit_to_running(owner, base, dataset, args.submits)


def submit_to_running(owner, base, dataset, submits: int) -> None:  # type: ignore[no-untyped-def]
    """A real idle worker; the time from the commit that sends the task to Job.start (before the model loads)."""
    from django.conf import settings

    from jobs import services
    from jobs.models import Job

    env = {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL", f"sqlite:///{settings.DATABASES['default']['NAME']}")}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", "cpu,gpu", "-c", "1", "--max-tasks-per-child", "1",
         "--without-gossip", "--without-mingle", "-l", "WARNING", "-n", "bench@%h"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(8)
        latencies = []
        for _ in range(submits):
            plan = services.plan_job(owner, base.id, [dataset.id], "lora", hyperparameters={"epochs": 0.05})
            sent = time.time()
            job = services.create_job(plan)
            while True:
                job.refresh_from_db()
                if job.started_at:
                    latencies.append(job.started_at.timestamp() - sent)
                    break
                time.sleep(0.01)
            while not Job.objects.get(pk=job.pk).is_final:  # idle again before the next submit
                time.sleep(0.1)
        print(f"submit-to-running over {len(latencies)} jobs: p50 {statistics.median(latencies) * 1000:.0f} ms, "
              f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


if __name__ == "__main__":
    main()
