"""A training run in its own process, for the kill-and-resume test: `python training_job.py SPEC_JSON DELAY`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from jobs.training import DatasetFiles, Hyperparameters, TrainingSpec
from jobs.training.engine import train


class SlowReporter:
    """Sleeps on every progress point so the parent can kill the run part-way."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        time.sleep(self.delay)

    def should_stop(self) -> bool:
        return False


def spec_to_json(spec: TrainingSpec) -> str:
    return json.dumps(
        {
            "base_model_dir": str(spec.base_model_dir),
            "task": spec.task,
            "method": spec.method,
            "datasets": [{"name": d.name, "train": str(d.train)} for d in spec.datasets],
            "hyperparameters": spec.hyperparameters.to_dict(),
            "output_dir": str(spec.output_dir),
            "checkpoint_dir": str(spec.checkpoint_dir),
        }
    )


def spec_from_json(text: str) -> TrainingSpec:
    raw = json.loads(text)
    return TrainingSpec(
        base_model_dir=Path(raw["base_model_dir"]),
        task=raw["task"],
        method=raw["method"],
        datasets=[DatasetFiles(d["name"], Path(d["train"])) for d in raw["datasets"]],
        hyperparameters=Hyperparameters(**raw["hyperparameters"]),
        output_dir=Path(raw["output_dir"]),
        checkpoint_dir=Path(raw["checkpoint_dir"]),
        device="cpu",
    )


if __name__ == "__main__":
    train(spec_from_json(Path(sys.argv[1]).read_text()), SlowReporter(float(sys.argv[2])))
