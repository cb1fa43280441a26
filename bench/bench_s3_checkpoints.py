"""Checkpoint uploads to S3 must not slow training: time per step with the upload on vs off, in one run.

Usage: python bench/bench_s3_checkpoints.py [--method lora|full] [--steps 40] [--save-steps 5] [--repeats 3]
    [--base DIR]

Starts moto's S3 server (tests/s3_server.py) on this machine, points Layercake's storage at a fresh bucket through
the S3_* variables (django-storages' S3 backend, as a deployment configures it), and trains the same tiny model
(`jobs.training.train`, task `text`, no packing, a checkpoint every --save-steps steps) alternately without and with
the worker's uploader (jobs.checkpoint_store: a hard-link snapshot in the save hook, then a background thread).
Prints one JSON line per run and a summary: the median seconds per step of each, their ratio (target <= 1.05), how
long the save hook held training up, and how long a checkpoint took from Trainer's save to its manifest in the
bucket. The S3 server shares this machine's CPUs with the training, which a real bucket does not: a pessimistic
setting.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPUs: one thread per process gives stable figures

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.s3_server import moto_server  # noqa: E402

SENTENCE = "the cat likes the dog and the moon, but the river sees a small house. "


class TimedStore:
    """Wraps the job's CheckpointStore to time each upload (Trainer's save to the manifest in the bucket)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.saved_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.bytes: list[int] = []

    def upload(self, folder: Path, done: set[str], stop: Any) -> bool:
        stored = self.store.upload(folder, done, stop)
        if stored:
            step = int(folder.name.rsplit("-", 1)[-1])
            self.latencies.append(time.perf_counter() - self.saved_at[step])
            self.bytes.append(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()))
        return stored

    def prune(self, keep: int) -> None:
        self.store.prune(keep)


def spec_for(base: Path, method: str, steps: int, save_steps: int, workdir: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters

    workdir.mkdir(parents=True)
    batch_size, max_length = 4, 128
    # Every row is longer than max_length: each step is exactly batch_size x max_length tokens.
    rows = [{"text": f"{i} " + SENTENCE * 30} for i in range(steps * batch_size)]
    pq.write_table(pa.Table.from_pylist(rows), workdir / "train.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:2]), workdir / "validation.parquet")
    hyperparameters = resolve_hyperparameters(
        "text", method, 0,
        {"epochs": 1, "batch_size": batch_size, "max_length": max_length, "packing": False, "save_steps": save_steps},
    )
    spec = TrainingSpec(
        base_model_dir=base,
        task="text",
        method=method,
        datasets=[DatasetFiles("bench", workdir / "train.parquet", workdir / "validation.parquet")],
        hyperparameters=hyperparameters,
        output_dir=workdir / "artifact",
        checkpoint_dir=workdir / "checkpoints",
        device="cpu",
    )
    spec.checkpoint_seconds = 0  # save_steps alone: the same checkpoints in every run
    return spec


def run(base: Path, method: str, steps: int, save_steps: int, workdir: Path, sync: bool) -> dict[str, Any]:
    from jobs.checkpoint_store import CheckpointStore, CheckpointUploader
    from jobs.training.engine import CHECKPOINTS_KEPT, train

    spec = spec_for(base, method, steps, save_steps, workdir)
    uploader, timed, hook_seconds = None, None, []
    if sync:
        timed = TimedStore(CheckpointStore(f"bench/{workdir.name}/checkpoints"))
        uploader = CheckpointUploader(
            timed,  # type: ignore[arg-type]
            workdir / "checkpoint-uploads",
            CHECKPOINTS_KEPT,
            lambda step, message: print(f"step {step}: {message}", file=sys.stderr),
        )

        def hook(folder: Path) -> None:
            started = time.perf_counter()
            timed.saved_at[int(folder.name.rsplit("-", 1)[-1])] = started
            uploader.saved(folder)
            hook_seconds.append(time.perf_counter() - started)

        spec.on_checkpoint = hook
    summary = train(spec).summary
    result: dict[str, Any] = {
        "sync": sync,
        "steps": summary.global_step,
        "seconds_per_step": summary.train_seconds / summary.global_step,
        "cpu_seconds_per_step": summary.train_cpu_seconds / summary.global_step,
    }
    if uploader is not None and timed is not None:
        deadline = time.monotonic() + 120
        while summary.global_step not in uploader.stored and time.monotonic() < deadline:
            time.sleep(0.05)
        uploader.close()
        result.update(
            checkpoints_saved=len(hook_seconds),
            checkpoints_stored=len(uploader.stored),
            checkpoint_bytes=max(timed.bytes, default=0),
            hook_ms_max=round(1000 * max(hook_seconds), 2),
            upload_seconds_max=round(max(timed.latencies), 3),
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save-steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", type=Path, help="a safetensors model folder; default: a 14M-parameter tiny Llama")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch, moto_server() as s3:
        scratch_dir = Path(scratch)
        os.environ.update(
            {"LAYERCAKE_HOME": str(scratch_dir / "home"), "DJANGO_SETTINGS_MODULE": "webapp.settings", **s3.bucket()}
        )
        os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-deployments-0123456789")
        import django
        import torch

        django.setup()
        from jobs.checkpoint_store import storage_is_remote
        from jobs.training.tiny import build_tiny_causal_lm

        assert storage_is_remote(), "storage should be the S3 bucket"
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        base = args.base or build_tiny_causal_lm(scratch_dir / "base", hidden_size=512, num_layers=6)
        results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for repeat in range(args.repeats):
            # Alternate so that a noisy neighbour on the shared CPUs hits both alike.
            for sync in (False, True):
                workdir = scratch_dir / f"run-{repeat}-{'sync' if sync else 'local'}"
                result = run(base, args.method, args.steps, args.save_steps, workdir, sync)
                results[sync].append(result)
                sys.stdout.write(json.dumps(result) + "\n")
                sys.stdout.flush()
        local = statistics.median(r["seconds_per_step"] for r in results[False])
        synced = statistics.median(r["seconds_per_step"] for r in results[True])
        local_cpu = statistics.median(r["cpu_seconds_per_step"] for r in results[False])
        synced_cpu = statistics.median(r["cpu_seconds_per_step"] for r in results[True])
        summary = {
            "method": args.method,
            "steps": args.steps,
            "save_steps": args.save_steps,
            "repeats": args.repeats,
            "seconds_per_step_without": round(local, 4),
            "seconds_per_step_with": round(synced, 4),
            "ratio": round(synced / local, 3),
            # The upload thread's CPU counts in this process's CPU time; a remote bucket's does not.
            "ratio_cpu": round(synced_cpu / local_cpu, 3),
            "checkpoint_bytes": max(r["checkpoint_bytes"] for r in results[True]),
            "hook_ms_max": max(r["hook_ms_max"] for r in results[True]),
            "upload_seconds_max": max(r["upload_seconds_max"] for r in results[True]),
        }
        sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
