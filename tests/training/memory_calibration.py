"""CPU memory calibration cases: each run trains in its own process, its peak RSS growth is set beside the estimate.

Used by tests/training/test_memory_calibration.py and bench/bench_memory.py (which prints the whole table).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters
from jobs.training.launch import spec_to_json
from jobs.training.memory import estimate_run_memory

PROBE = Path(__file__).with_name("memory_probe.py")
_WORDS = "the cat dog red blue sun moon tree book green apple river house likes sees reads a of and to".split()


@dataclass
class Case:
    """One calibration run: model, task, method and shape; rows are always longer than max_length."""

    model: str  # a key of the `models` mapping given to `measure`
    task: str
    method: str
    batch_size: int = 4
    max_length: int = 64
    steps: int = 2
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in self.overrides.items())
        return f"{self.model} {self.task}/{self.method} {self.batch_size}x{self.max_length}{extra}"


def _text(generator: random.Random, words: int) -> str:
    return " ".join(generator.choice(_WORDS) for _ in range(words))


def rows_for(task: str, count: int, length: int) -> list[dict[str, Any]]:
    """Rows long enough that every batch is batch_size x max_length real tokens."""
    generator = random.Random(0)
    words = length + 16
    if task == "sft":
        return [{"instruction": _text(generator, words // 2), "input": "", "output": _text(generator, words)}
                for _ in range(count)]
    if task == "text":
        return [{"text": _text(generator, words)} for _ in range(count)]
    if task == "classification":
        return [{"text": _text(generator, words), "label": ["good", "bad"][i % 2]} for i in range(count)]
    if task == "token_classification":
        return [{"tokens": _text(generator, words).split(), "tags": ["O", "B-X"] * (words // 2)} for _ in range(count)]
    if task == "preference":
        return [
            {"prompt": [{"role": "user", "content": _text(generator, words // 2)}], "chosen": _text(generator, words),
             "rejected": _text(generator, words)}
            for _ in range(count)
        ]
    return [{"source": _text(generator, words), "target": _text(generator, words)} for _ in range(count)]


def build_spec(case: Case, base: Path, folder: Path) -> TrainingSpec:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # A checkpoint left by an earlier run would be resumed, and a finished one trains nothing.
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows_for(case.task, case.batch_size * case.steps, case.max_length)
    train_file, validation_file = folder / "train.parquet", folder / "validation.parquet"
    pq.write_table(pa.Table.from_pylist(rows), train_file)
    pq.write_table(pa.Table.from_pylist(rows[: case.batch_size]), validation_file)
    settings: dict[str, Any] = {
        "epochs": 1, "batch_size": case.batch_size, "max_length": case.max_length, "packing": False,
        "gradient_accumulation_steps": 1, "save_steps": 10**6, **case.overrides,
    }
    if case.method == "prompt_tuning":
        settings.setdefault("prompt_init_text", "Write some words.")
    return TrainingSpec(
        base_model_dir=base,
        task=case.task,
        method=case.method,
        datasets=[DatasetFiles("calibration", train_file, validation_file)],
        hyperparameters=resolve_hyperparameters(case.task, case.method, 100_000, settings),
        output_dir=folder / "artifact",
        checkpoint_dir=folder / "checkpoints",
        device="cpu",
    )


def measure(case: Case, base: Path, folder: Path) -> dict[str, Any]:
    """Run the case in a fresh process; return measured growth, the estimate and their ratio."""
    spec = build_spec(case, base, folder)
    spec_file = folder / "spec.json"
    spec_file.write_text(spec_to_json(spec))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(PROBE), str(spec_file)], capture_output=True, text=True, timeout=600, env=environment
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{case.name}: probe failed\n{completed.stderr[-3000:]}")
    probe = json.loads(completed.stdout.strip().splitlines()[-1])
    estimate = estimate_run_memory(base, case.task, case.method, spec.hyperparameters, "cpu", num_labels=2)
    return {
        "case": case.name,
        "measured": probe["increase"],
        "estimate": estimate.total,
        "ratio": estimate.total / probe["increase"],
        "parts": estimate.to_dict(),
        "steps": probe["steps"],
    }


def measure_all(cases: list[Case], models: dict[str, Path], folder: Path, workers: int = 2) -> list[dict[str, Any]]:
    """Two processes at a time: peak RSS is per process, so neighbours do not disturb each other's figure."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(measure, case, models[case.model], folder / f"case{index}") for index, case in enumerate(cases)
        ]
        return [future.result() for future in futures]


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'case':<58} {'measured MiB':>12} {'estimate MiB':>12} {'est/meas':>8}"]
    for result in results:
        lines.append(
            f"{result['case']:<58} {result['measured'] / 2**20:>12.1f} {result['estimate'] / 2**20:>12.1f} "
            f"{result['ratio']:>8.2f}"
        )
    return "\n".join(lines)
