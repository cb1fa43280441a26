"""A run killed mid-way (SIGKILL, as when a worker dies) resumes from its last checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs.training.engine import last_complete_checkpoint, train
from jobs.training.launch import spec_to_json
from tests.training.conftest import instruction_rows, make_spec

JOB_SCRIPT = Path(__file__).with_name("training_job.py")


class StepRecorder:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        if loss is not None:
            self.steps.append(step)

    def should_stop(self) -> bool:
        return False


def _spec(tmp_path: Path, tiny_lm: Path):  # type: ignore[no-untyped-def]
    return make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(64), epochs=3, save_steps=3)


def test_killed_run_resumes_from_its_checkpoint_and_reaches_the_same_final_step(tmp_path: Path, tiny_lm: Path) -> None:
    uninterrupted = train(_spec(tmp_path / "uninterrupted", tiny_lm))
    final_step = uninterrupted.summary.global_step
    assert final_step >= 18

    spec = _spec(tmp_path / "killed", tiny_lm)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec_to_json(spec))
    process = subprocess.Popen(
        [sys.executable, str(JOB_SCRIPT), str(spec_file), "0.15"],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while last_complete_checkpoint(spec.checkpoint_dir) is None:
            assert process.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    killed_at = last_complete_checkpoint(spec.checkpoint_dir)
    assert killed_at is not None
    checkpoint_step = int(killed_at.name.rsplit("-", 1)[-1])
    assert 0 < checkpoint_step < final_step
    assert not spec.output_dir.exists()

    reporter = StepRecorder()
    resumed = train(spec, reporter)
    assert resumed.summary.resumed_from_step == checkpoint_step
    assert resumed.summary.global_step == final_step
    # Steps before the checkpoint were not redone: this process trained only the remainder.
    assert reporter.steps == list(range(checkpoint_step + 1, final_step + 1))
    tuned, reference = resumed.metrics["tuned"]["main"]["loss"], uninterrupted.metrics["tuned"]["main"]["loss"]
    assert abs(tuned - reference) < 1e-3
