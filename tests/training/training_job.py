"""A training run in its own process, for the kill-and-resume test: `python training_job.py SPEC_JSON DELAY`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.training.engine import train
from jobs.training.launch import spec_from_json


class SlowReporter:
    """Sleeps on every progress point so the parent can kill the run part-way."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.delay)

    def should_stop(self) -> bool:
        return False


if __name__ == "__main__":
    train(spec_from_json(Path(sys.argv[1]).read_text()), SlowReporter(float(sys.argv[2])))
