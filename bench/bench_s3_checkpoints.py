"""Checkpoint uploads to S3 must not slow training: time per step with the upload vs without, in one run.

Usage: python bench/bench_s3_checkpoints.py [--method lora|full] [--steps 200] [--save-steps 10] [--base DIR]

Starts moto's S3 server (tests/s3_server.py) on this machine, points Layercake's storage at a fresh bucket through
the S3_* variables (django-storages' S3 backend, as a deployment configures it), and trains a tiny model
(`jobs.training.train`, task `text`, no packing, a checkpoint every --save-steps steps) with the worker's uploader
(jobs.checkpoint_store: a hard-link snapshot in the save hook, then a background thread) handed every other
checkpoint. An upload runs while the steps after its checkpoint train, so the run's stretches of --save-steps steps
alternate: after an uploaded checkpoint, after one kept on disk only. Both kinds hold one save and the same steps,
and they interleave every few seconds, so a neighbour's load on a shared machine falls on both alike (separate runs
with and without uploads differ by more than the effect, here). Prints each stretch as a JSON line, then a summary:
the median seconds per step of each kind and their ratio (target <= 1.05), how long the save hook held training up,
and how long a checkpoint took from Trainer's save to its manifest in the bucket.

The S3 server shares this machine's CPUs with the training, which a real bucket does not; it runs at nice 10, so
that it takes what the training leaves. Over plain HTTP boto3 also hashes every byte it sends (SigV4 payload
signing), which it skips over HTTPS.
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


class StepClock:
    """A Reporter that notes when each training step ends."""

    def __init__(self) -> None:
        self.ended: dict[int, float] = {}

    def progress(self, step: int, total_steps: int, epoch: float, loss: float | None, learning_rate: float | None,
                 metrics: dict[str, float]) -> None:
        if loss is not None:
            self.ended[step] = time.perf_counter()

    def should_stop(self) -> bool:
        return False


class TimedStore:
    """Wraps the job's CheckpointStore to time each upload (Trainer's save to the manifest in the bucket)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.saved_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self.bytes: list[int] = []

    def complete(self) -> list[int]:
        return list(self.store.complete())

    def upload(self, folder: Path, done: set[str], stop: Any) -> bool:
        stored = bool(self.store.upload(folder, done, stop))
        if stored:
            self.latencies.append(time.perf_counter() - self.saved_at[int(folder.name.rsplit("-", 1)[-1])])
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
    spec.checkpoint_seconds = 0  # save_steps alone decides
    return spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=200)
    # Every 10 steps of ~0.4 s: ten times the production cadence (save_steps 100, or 60 s of training).
    parser.add_argument("--save-steps", type=int, default=10)
    parser.add_argument("--base", type=Path, help="a safetensors model folder; default: a 14M-parameter tiny Llama")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch, moto_server(nice=10) as s3:
        scratch_dir = Path(scratch)
        os.environ.update(
            {"LAYERCAKE_HOME": str(scratch_dir / "home"), "DJANGO_SETTINGS_MODULE": "webapp.settings", **s3.bucket()}
        )
        os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-deployments-0123456789")
        import django
        import torch

        django.setup()
        from jobs.checkpoint_store import CheckpointStore, CheckpointUploader, storage_is_remote
        from jobs.training.engine import CHECKPOINTS_KEPT, train
        from jobs.training.tiny import build_tiny_causal_lm

        assert storage_is_remote(), "storage should be the S3 bucket"
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        base = args.base or build_tiny_causal_lm(scratch_dir / "base", hidden_size=512, num_layers=6)
        spec = spec_for(base, args.method, args.steps, args.save_steps, scratch_dir / "run")
        store = TimedStore(CheckpointStore("bench/checkpoints"))
        notes: list[str] = []
        uploader = CheckpointUploader(
            store, scratch_dir / "checkpoint-uploads", CHECKPOINTS_KEPT,  # type: ignore[arg-type]
            lambda step, message: notes.append(message),
        )
        hook_seconds: list[float] = []

        def every_other(folder: Path) -> None:
            step = int(folder.name.rsplit("-", 1)[-1])
            if step // args.save_steps % 2 == 1:
                started = time.perf_counter()
                store.saved_at[step] = started
                uploader.saved(folder)
                hook_seconds.append(time.perf_counter() - started)

        spec.on_checkpoint = every_other
        clock = StepClock()
        summary = train(spec, clock).summary
        deadline = time.monotonic() + 60
        while len(uploader.stored) < len(hook_seconds) and time.monotonic() < deadline:
            time.sleep(0.05)
        uploader.close()

        stretches: dict[bool, list[float]] = {False: [], True: []}
        # After checkpoint k*S: its save, then steps k*S+1 .. (k+1)*S (the steps before the first checkpoint are left
        # out: no save in them).
        for start in range(args.save_steps, summary.global_step - args.save_steps + 1, args.save_steps):
            uploaded = start // args.save_steps % 2 == 1
            seconds = (clock.ended[start + args.save_steps] - clock.ended[start]) / args.save_steps
            stretches[uploaded].append(seconds)
            sys.stdout.write(json.dumps({"after_checkpoint": start, "uploaded": uploaded, "seconds_per_step": round(seconds, 4)}) + "\n")
        without, with_upload = statistics.median(stretches[False]), statistics.median(stretches[True])
        sys.stdout.write(
            json.dumps(
                {
                    "method": args.method,
                    "steps": summary.global_step,
                    "save_steps": args.save_steps,
                    "stretches": [len(stretches[False]), len(stretches[True])],
                    "seconds_per_step_without": round(without, 4),
                    "seconds_per_step_with": round(with_upload, 4),
                    "ratio": round(with_upload / without, 3),
                    "ratio_of_means": round(statistics.mean(stretches[True]) / statistics.mean(stretches[False]), 3),
                    "checkpoints_uploaded": len(uploader.stored),
                    "checkpoint_bytes": max(store.bytes, default=0),
                    "hook_ms_max": round(1000 * max(hook_seconds), 2),
                    "upload_seconds_median": round(statistics.median(store.latencies), 3),
                    "upload_seconds_max": round(max(store.latencies), 3),
                    "upload_problems": notes,
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
