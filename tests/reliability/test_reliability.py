"""The reliability suite (issue 10): real `make run`s killed, loaded and cut off from Redis.

Each test runs one scenario of bench/bench_reliability.py (the same code that produced the figures in
docs/benchmarks.md, "Reliability") in its own process, on a fresh LAYERCAKE_HOME and port, and asserts on the
figures it writes. They take minutes, so `make test` leaves them out and `make reliability` (which .ci/run also
calls) runs them, one at a time: they measure ages and restarts on the machine's two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

# Each scenario takes minutes: the suite-wide 600 s timeout is for ordinary tests.
pytestmark = [pytest.mark.reliability, pytest.mark.timeout(2400)]

BENCH = ROOT / "bench" / "bench_reliability.py"


def scenario(name: str, out: Path, *options: str, timeout: float = 1800) -> dict[str, Any]:
    """Runs one scenario; its figures (the bench's JSON for that scenario). Its table goes to this test's output."""
    env = {k: v for k, v in os.environ.items() if k not in {"LAYERCAKE_HOME", "DATABASE_URL", "REDIS_URL"}}
    done = subprocess.run([sys.executable, str(BENCH), name, "--out", str(out), *options], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-6000:], done.stderr[-3000:])
    results = json.loads(out.read_text())
    figures = results[name]
    assert "error" not in figures, f"{name} broke: {figures['error']}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return figures


def services_up() -> bool:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import bench_reliability
    finally:
        sys.path.remove(str(BENCH.parent))
    return bench_reliability.redis_up() and bench_reliability.postgres_up()


def test_five_killed_training_workers_each_resume_from_a_checkpoint_under_60_s_old(tmp_path: Path) -> None:
    figures = scenario("kill-worker", tmp_path / "kill.json", "--kills", "5")
    runs = figures["runs"]
    assert len(runs) == 5
    for run in runs:
        assert run.get("status") == "succeeded", run
        assert run["checkpoint_age_s"] <= 60, run
        # From the newest checkpoint on disk at the kill: nothing older than a minute is trained twice.
        assert run["resumed_from_step"] == run["checkpoint_step"], run
        assert run["step_at_kill"] < run["total_steps"] == run["global_step"], run
        assert run["worker_restarted_s"] is not None and run["worker_restarted_s"] <= 5, run
        assert not run["orphans_after_kill"], run
    web = figures["web_during_kills"]
    assert web["requests"] > 100 and web["non_200"] == 0 and web["connection_errors"] == 0, web
    assert figures["worker_crashes"] == 0, figures["first_crash"]
    assert not figures["leftovers"]


def test_the_site_answers_every_request_while_each_worker_and_beat_are_killed_in_turn(tmp_path: Path) -> None:
    figures = scenario("web-under-kills", tmp_path / "web.json", "--web-rounds", "2")
    assert len(figures["kills"]) == 8
    assert all(kill["back_in_s"] is not None and kill["back_in_s"] <= 5 for kill in figures["kills"]), figures["kills"]
    web = figures["web"]
    assert web["requests"] > 50 and web["non_200"] == 0 and web["connection_errors"] == 0, web
    assert figures["beats_at_end"] == 1
    assert not figures["orphans_at_end"] and not figures["leftovers"]


def test_fifty_clients_for_a_minute_get_no_error(tmp_path: Path) -> None:
    figures = scenario("load", tmp_path / "load.json", "--load-clients", "50", "--load-seconds", "60")
    backends = ["embedded", "postgres_redis"] if services_up() else ["embedded"]
    for backend in backends:
        run = figures[backend]
        assert "skipped" not in run, run
        assert run["seconds"] >= 60 and run["requests"] > 1000, run
        assert run["errors"] == 0, run["error_kinds"]
        assert not run["leftovers"]
        print(f"load {backend}: p95 {run['p95_ms']} ms, {run['requests_per_s']} req/s")


@pytest.mark.skipif(not services_up(), reason="needs Redis and PostgreSQL answering (CI starts them)")
@pytest.mark.timeout(3600)  # 100 jobs at 6-11 s each on two cores (a fresh training process each)
def test_a_redis_restart_with_100_queued_jobs_loses_none_and_leaves_none_stuck(tmp_path: Path) -> None:
    figures = scenario("redis-restart", tmp_path / "redis.json", "--redis-jobs", "100", "--redis-deadline", "2400",
                       timeout=3000)
    # check_jobs may already have sent some of the waiting jobs again (LAYERCAKE_RESEND_AFTER_SECONDS, 15 s here).
    assert figures["messages_in_redis_before_restart"] >= 100
    assert figures["messages_in_redis_after_restart"] == 0, "the restart is meant to lose the queued messages"
    assert figures["final_statuses"] == {"succeeded": 100}, figures
    assert figures["lost"] == figures["stuck"] == figures["failed"] == 0
    assert figures["web_ok"] and not figures["leftovers"]
