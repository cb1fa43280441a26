"""A worker reads its devices in a child process: the Celery parent must never initialise CUDA, or every pool child
forked after a job (--max-tasks-per-child 1) could not use the GPU."""

from __future__ import annotations

import sys

from jobs import worker_registry
from jobs.training.execution import local_devices


def test_devices_are_read_in_a_child_and_match_what_this_process_sees() -> None:
    assert worker_registry.detect_devices() == local_devices()


def test_a_child_that_cannot_start_leaves_the_cpu_registered(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    devices = worker_registry.detect_devices()
    assert [device["kind"] for device in devices] == ["cpu"] and devices[0]["cores"] >= 1
    assert "could not read this worker's devices" in caplog.text
