"""`make run`'s supervisor: a killed process is back within 5 s, the site keeps answering, one beat only."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status(env: dict[str, str]) -> dict[str, tuple[str, int | None]]:
    output = subprocess.run(
        [str(ROOT / ".venv/bin/supervisorctl"), "-c", str(ROOT / "bin/supervisord.conf"), "status"],
        env=env, capture_output=True, text=True, cwd=ROOT,
    ).stdout
    found: dict[str, tuple[str, int | None]] = {}
    for line in output.splitlines():
        match = re.match(r"(\S+)\s+(\S+)(?:\s+pid (\d+))?", line)
        if match:
            found[match.group(1)] = (match.group(2), int(match.group(3)) if match.group(3) else None)
    return found


def page(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as response:
            return response.status
    except OSError:
        return 0


def beats() -> int:
    listing = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True).stdout
    return sum(1 for line in listing.splitlines() if "celery -A webapp beat" in line and "supervision-home" in line)


def test_a_killed_worker_is_restarted_within_5_s_while_the_site_stays_up():
    # A short folder: its control sockets must fit a unix socket path (bin/run refuses a home over 90 characters),
    # and pytest's tmp_path under xdist is longer than that.
    home = Path(tempfile.mkdtemp(prefix="supervision-home-"))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(LAYERCAKE_HOME=str(home), PORT=str(port))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=ROOT, check=True)
    runner = subprocess.Popen(["bin/run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (page(port) == 200 and all(s == "RUNNING" for s, _ in status(env).values()) and len(status(env)) == 5):
            time.sleep(0.5)
        before = status(env)
        assert page(port) == 200 and len(before) == 5, before
        assert beats() == 1

        os.kill(before["worker"][1], signal.SIGKILL)  # type: ignore[arg-type]
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 5:
            state, pid = status(env)["worker"]
            if state == "RUNNING" and pid != before["worker"][1]:
                break
            assert page(port) == 200  # the site never goes down with it
            time.sleep(0.2)
        else:
            raise AssertionError(f"the worker was not restarted within 5 s: {status(env)}")

        os.kill(before["beat"][1], signal.SIGKILL)  # type: ignore[arg-type]
        time.sleep(3)
        assert status(env)["beat"][0] == "RUNNING" and beats() == 1
    finally:
        os.killpg(runner.pid, signal.SIGTERM)
        runner.wait(timeout=90)
        shutil.rmtree(home, ignore_errors=True)
    assert beats() == 0
