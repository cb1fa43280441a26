"""A fine-tuning job through the worker's own code path on this machine, GPU if it has one: plan, run, register, load.

    python bench/gpu_worker_path.py [--method lora] [--out DIR] [--base MODEL_DIR]

What it does, all in one process with embedded defaults (SQLite, the filesystem broker, local files) in a scratch
LAYERCAKE_HOME:
1. migrates the database and registers this host as a worker (its devices and kernel capabilities, as a Celery
   worker does at start), so `plan_job` plans for this machine's GPU;
2. imports a base model folder into the catalog (`--base`, else a 30-layer Llama of SmolLM2's width with random
   weights, built here: the bundled packages are too large to carry to a GPU host);
3. uploads and checks an instruction dataset through the datasets service;
4. runs `manage.py finetune`: the same `jobs.runner.execute` a worker calls, from spec to artifact to catalog entry;
5. loads the registered artifact with plain transformers + peft and generates a few tokens.
It writes `worker_path.json` (plan, estimate vs measured peak, throughput, timings) to --out and prints it.
On the GPU host, run it with the wheels of ../shared/gpu/README.md plus Django, Celery and their dependencies.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LAYERCAKE_HOME", tempfile.mkdtemp(prefix="layercake-gpu-path-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
os.environ.setdefault("SECRET_KEY", "gpu-worker-path-check")
for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(name, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402


def instruction_rows(count: int) -> list[dict[str, str]]:
    words = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book", "green", "apple", "river", "house"]
    return [
        {"instruction": f"Repeat the word {words[i % len(words)]} three times.", "input": "",
         "output": " ".join([words[i % len(words)]] * 3)}
        for i in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="lora", choices=["lora", "qlora", "full", "freeze", "prompt_tuning"])
    parser.add_argument("--base", type=Path, default=None, help="a model folder (default: build a random Llama)")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "out"))
    parser.add_argument("--hyperparameters", default='{"epochs": 1, "max_length": 256}')
    arguments = parser.parse_args()

    import django

    django.setup()
    import torch
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.core.management import call_command

    from jobs import worker_registry
    from jobs.models import Job
    from jobs.training.tiny import build_tiny_causal_lm
    from webapp.catalog import importing
    from webapp.datasets import services as datasets

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    owner, _ = get_user_model().objects.get_or_create(username="gpu-path")
    worker = worker_registry.register(f"gpu-path@{socket.gethostname()}", ["cpu", "gpu"])
    base_dir = arguments.base or build_tiny_causal_lm(
        Path(os.environ["LAYERCAKE_HOME"]) / "base-llama", hidden_size=576, num_layers=30
    )
    base = importing.import_base_model(str(base_dir), name="gpu-path-llama")
    rows = "\n".join(json.dumps(row) for row in instruction_rows(arguments.rows)).encode()
    dataset = datasets.ingest(
        SimpleUploadedFile("repeat.jsonl", rows), owner, task="sft", validation_fraction=0.1
    )
    dataset = datasets.check_dataset(dataset)
    if dataset.status != "ready":
        print(f"dataset not ready: {dataset.status} {dataset.errors}", file=sys.stderr)
        return 1

    output = io.StringIO()
    train_started = time.perf_counter()
    call_command(
        "finetune", user=owner.username, model=str(base.pk), dataset=[str(dataset.pk)], method=arguments.method,
        hyperparameters=arguments.hyperparameters, stdout=output,
    )
    train_seconds = time.perf_counter() - train_started
    job = Job.objects.latest("created_at")
    summary: dict[str, Any] = job.summary or {}
    estimate_total = job.estimate["memory"]["total"]
    peak = summary.get("peak_memory_bytes") or 0

    # The artifact as a user downloads it: plain transformers + peft, nothing of Layercake's.
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = job.result_model
    assert result is not None
    folder = result.local_dir()
    if result.kind == "adapter":
        # adapter_config.json names the base by its catalog name; the user points peft at their copy of the base.
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.local_dir()), folder)
    else:
        model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(base.local_dir())
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Repeat the word cat three times."}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(generated[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    record = {
        "device": worker.devices,
        "job": str(job.pk),
        "status": job.status,
        "method": job.method,
        "queue": job.queue,
        "hyperparameters": job.hyperparameters,
        "plan_changes": job.estimate.get("changes"),
        "execution": job.estimate.get("execution"),
        "estimate_bytes": estimate_total,
        "peak_bytes": peak,
        # On CUDA the peak is the allocator's, the estimate's own measure; on CPU the engine reports the whole
        # process's RSS (Django and imports included), so the ratio would mean nothing: bench/bench_memory.py
        # measures CPU growth instead.
        "estimate_over_peak": round(estimate_total / peak, 3) if peak and job.estimate.get("device") == "cuda" else None,
        "tokens_per_second": summary.get("tokens_per_second"),
        "global_step": summary.get("global_step"),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "result_model": {"id": str(result.pk), "kind": result.kind, "files": [f["name"] for f in result.files]},
        "loaded_with": type(model).__name__,
        "answer": answer,
        "metrics": job.metrics,
    }
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "worker_path.json").write_text(json.dumps(record, indent=2, default=str))
    print(json.dumps(record, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
