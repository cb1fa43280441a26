"""Packing on variable-length SFT data: share of processed tokens that are real, and real tokens/s, against
padding each batch to its longest row.

Usage: python bench/bench_packing.py [--rows 240] [--batch-size 8] [--max-length 512] [--base DIR]
Prints one JSON line per run and a side-by-side summary line.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPUs: one thread per process gives stable figures

import argparse
import json
import logging
import random
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters
from jobs.training.engine import train
from jobs.training.tiny import build_tiny_causal_lm

WORDS = "the cat likes a dog and green apples near the river while our team builds a small house".split()


def sft_rows(count: int, seed: int = 0) -> list[dict[str, str]]:
    """Instruction rows whose answers range from a word to a few hundred tokens, long-tailed like real SFT data."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        length = min(int(generator.paretovariate(1.2) * 4), 300)
        answer = " ".join(generator.choice(WORDS) for _ in range(length))
        rows.append({"instruction": f"Write text number {index}.", "input": "", "output": answer})
    return rows


def run(base: Path, rows_file: Path, packing: bool, batch_size: int, max_length: int, workdir: Path) -> dict:
    hyperparameters = resolve_hyperparameters(
        "sft",
        "lora",
        0,
        {
            "epochs": 1,
            "batch_size": batch_size,
            "max_length": max_length,
            "packing": packing,
            "save_steps": 10**6,
            "eval_fraction": 0.02,
        },
    )
    spec = TrainingSpec(
        base_model_dir=base,
        task="sft",
        method="lora",
        datasets=[DatasetFiles("bench", rows_file)],
        hyperparameters=hyperparameters,
        output_dir=workdir / "artifact",
        checkpoint_dir=workdir / "checkpoints",
        device="cpu",
    )
    summary = train(spec).summary
    return {
        "packing": packing,
        "steps": summary.global_step,
        "tokens_processed": summary.tokens_seen,
        "real_tokens": summary.real_tokens,
        "real_share": round(summary.real_tokens / summary.tokens_seen, 4),
        "seconds": summary.train_seconds,
        "cpu_seconds": summary.train_cpu_seconds,
        "real_tokens_per_second": round(summary.real_tokens / summary.train_seconds, 1),
        "real_tokens_per_cpu_second": round(summary.real_tokens / summary.train_cpu_seconds, 1),
        "processed_tokens_per_second": round(summary.tokens_seen / summary.train_seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--base", type=Path, help="a safetensors model folder; default: a 14M-parameter tiny Llama")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        base = args.base or build_tiny_causal_lm(scratch_dir / "base", hidden_size=512, num_layers=6)
        rows_file = scratch_dir / "sft.parquet"
        pq.write_table(pa.Table.from_pylist(sft_rows(args.rows)), rows_file)
        results = {}
        for packing in (True, False):
            workdir = scratch_dir / f"packing-{packing}"
            workdir.mkdir()
            results[packing] = run(base, rows_file, packing, args.batch_size, args.max_length, workdir)
            sys.stdout.write(json.dumps(results[packing]) + "\n")
        packed, padded = results[True], results[False]
        sys.stdout.write(
            json.dumps(
                {
                    "packed_real_share": packed["real_share"],
                    "padded_real_share": padded["real_share"],
                    "packed_real_tokens_per_cpu_second": packed["real_tokens_per_cpu_second"],
                    "padded_real_tokens_per_cpu_second": padded["real_tokens_per_cpu_second"],
                    "speedup_cpu": round(packed["real_tokens_per_cpu_second"] / padded["real_tokens_per_cpu_second"], 3),
                    "speedup_wall": round(packed["real_tokens_per_second"] / padded["real_tokens_per_second"], 3),
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
