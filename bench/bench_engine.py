"""Engine overhead: tokens/s of jobs.training.train against a bare transformers+peft loop on the same model/batches.

Usage: python bench/bench_engine.py [--method lora|full] [--steps 40] [--repeats 2] [--base DIR]
Prints one JSON line per measurement and a summary line with the throughput ratio (engine / bare), best of the
repeats, by CPU time (stable on a shared machine) and by wall time. The engine's figures cover all of
Trainer.train(): set-up, data collation, callbacks, logging and the end-of-epoch evaluation of a 2-row set.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # shared CPUs: one thread per process gives stable figures

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters
from jobs.training.engine import train
from jobs.training.tiny import build_tiny_causal_lm

logger = logging.getLogger("bench_engine")
SENTENCE = "the cat likes the dog and the moon, but the river sees a small house. "


def _rows(count: int) -> list[dict[str, str]]:
    # Every row is longer than max_length, so every batch is exactly batch_size x max_length tokens in both runs.
    return [{"text": f"{i} " + SENTENCE * 30} for i in range(count)]


def _write(rows: list[dict[str, str]], path: Path) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def run_engine(base: Path, method: str, steps: int, batch_size: int, max_length: int, workdir: Path) -> dict:
    train_file = _write(_rows(steps * batch_size), workdir / "train.parquet")
    # A two-row validation set keeps the per-epoch evaluation negligible next to the training steps.
    validation_file = _write(_rows(2), workdir / "validation.parquet")
    hyperparameters = resolve_hyperparameters(
        "text",
        method,
        0,
        {"epochs": 1, "batch_size": batch_size, "max_length": max_length, "packing": False, "save_steps": 10**6},
    )
    spec = TrainingSpec(
        base_model_dir=base,
        task="text",
        method=method,
        datasets=[DatasetFiles("bench", train_file, validation_file)],
        hyperparameters=hyperparameters,
        output_dir=workdir / "artifact",
        checkpoint_dir=workdir / "checkpoints",
        device="cpu",
    )
    result = train(spec)
    summary = result.summary
    return {
        "runner": "engine",
        "steps": summary.global_step,
        "tokens": summary.tokens_seen,
        "seconds": summary.train_seconds,
        "cpu_seconds": summary.train_cpu_seconds,
        "tokens_per_second": summary.tokens_seen / summary.train_seconds,
        "tokens_per_cpu_second": summary.tokens_seen / summary.train_cpu_seconds,
    }


def run_bare(base: Path, method: str, steps: int, batch_size: int, max_length: int) -> dict:
    """The loop every tutorial writes: tokenize, batch, forward, backward, AdamW step, linear schedule."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_linear_schedule_with_warmup

    hyperparameters = resolve_hyperparameters("text", method, 0, {"batch_size": batch_size})
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if method == "lora":
        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=hyperparameters.lora_r,
            lora_alpha=hyperparameters.lora_alpha,
            lora_dropout=hyperparameters.lora_dropout,
        )
        model = get_peft_model(model, config)
    texts = [row["text"] for row in _rows(steps * batch_size)]
    encoded = tokenizer(texts, truncation=True, max_length=max_length, return_tensors="pt")
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=hyperparameters.learning_rate, weight_decay=0.0)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.03 * steps), steps)
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    tokens = 0
    for step in range(steps):
        rows = slice(step * batch_size, (step + 1) * batch_size)
        input_ids = encoded["input_ids"][rows]
        # Every row fills max_length, so there is no padding: passing an all-ones mask would only cost time
        # (~15% here, SDPA takes its causal fast path without one), and the engine's collator passes none either.
        loss = model(input_ids=input_ids, labels=input_ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += input_ids.numel()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "runner": "bare",
        "steps": steps,
        "tokens": tokens,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "tokens_per_second": tokens / seconds,
        "tokens_per_cpu_second": tokens / cpu_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="lora", choices=["lora", "full"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--base", type=Path, help="a safetensors model folder; default: a 14M-parameter tiny Llama")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    with tempfile.TemporaryDirectory() as scratch:
        scratch_dir = Path(scratch)
        base = args.base or build_tiny_causal_lm(scratch_dir / "base", hidden_size=512, num_layers=6)
        best: dict[str, float] = {}
        for repeat in range(args.repeats):
            # Alternate the runners so a noisy neighbour on the shared CPU hits both alike.
            for runner in ("bare", "engine"):
                if runner == "bare":
                    result = run_bare(base, args.method, args.steps, args.batch_size, args.max_length)
                else:
                    workdir = scratch_dir / f"engine-{repeat}"
                    workdir.mkdir()
                    result = run_engine(base, args.method, args.steps, args.batch_size, args.max_length, workdir)
                sys.stdout.write(json.dumps(result) + "\n")
                for measure in ("tokens_per_second", "tokens_per_cpu_second"):
                    key = f"{runner}_{measure}"
                    best[key] = max(best.get(key, 0.0), result[measure])
        sys.stdout.write(
            json.dumps(
                {
                    "method": args.method,
                    "threads": torch.get_num_threads(),
                    **{key: round(value, 1) for key, value in best.items()},
                    # CPU time is the figure to trust on a shared machine; wall time moves with the neighbours.
                    "ratio_cpu": round(best["engine_tokens_per_cpu_second"] / best["bare_tokens_per_cpu_second"], 3),
                    "ratio_wall": round(best["engine_tokens_per_second"] / best["bare_tokens_per_second"], 3),
                }
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
