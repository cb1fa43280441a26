"""Benchmark: the three ways to run an adapter, on the bundled SmolLM2-135M-Instruct (CPU).

    .venv/bin/python bench/bench_inference.py                  # the issue's figures
    .venv/bin/python bench/bench_inference.py --threads 2 --rounds 5 --adapters 10

Measures, each part in its own fresh process so resident memory is its own:
1. per-token decode latency of the adapter applied at inference (peft, unmerged) against the same adapter
   merged into the base; both models live in one process and are timed in alternating rounds (ABBA
   order); the fastest round of each mode counts (other processes on a shared machine only ever add
   time), and the per-round ratios and medians are printed beside it (target: ratio <= 1.15);
2. ten LoRA adapters resident over one base in the playground's pool (webapp.playground.resident):
   RSS against base + the ten adapters' weights (target: <= base + adapters + 5%), and the time of a swap
   between resident adapters (target: <= 50 ms).
Adapters are random LoRA (r=16, q_proj and v_proj, the peft default for Llama), as the engine trains them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def smollm2_folder() -> Path:
    """The converted SmolLM2 folder (the GGUF is de-quantized once into the cache, as `make models` does)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from webapp.catalog import importing

    bundled = next(b for b in importing.BUNDLED_MODELS if b.name == "SmolLM2-135M-Instruct")
    return importing.converted_gguf_folder(bundled.path())


def make_adapters(base_dir: Path, scratch: Path, count: int, r: int = 16) -> list[Path]:
    """`count` LoRA adapters with different random weights, from one peft model (the base is loaded once)."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    folders = []
    for index in range(count):
        torch.manual_seed(index)
        with torch.no_grad():  # small, like trained deltas: the answers stay sensible
            for name, parameter in peft_model.named_parameters():
                if "lora_A" in name:
                    parameter.normal_(0, 0.02)
                elif "lora_B" in name:
                    parameter.normal_(0, 0.0002)
        folder = scratch / f"adapter-{index}"
        peft_model.save_pretrained(folder, safe_serialization=True)
        folders.append(folder)
    return folders


def adapter_weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("adapter_model*.safetensors"))


def rss() -> int:
    import psutil

    gc.collect()
    return int(psutil.Process().memory_info().rss)


# --- part 1: adapter at inference against merged ------------------------------------------------------


def latency_part(base_dir: Path, adapter_dir: Path, threads: int, rounds: int, tokens: int) -> dict[str, Any]:
    import torch

    from jobs.training.tasks.base import chat_inputs, generation_kwargs
    from webapp.catalog import loading
    from webapp.catalog.merging import merge_weights

    torch.set_num_threads(threads)
    tokenizer = loading.load_tokenizer(base_dir)
    unmerged = loading.load_adapter_on_base(adapter_dir, base_dir)
    merged = merge_weights(loading.load_adapter_on_base(adapter_dir, base_dir))
    inputs = chat_inputs(tokenizer, "Write a short story about a cat who finds a small house.")

    def timed(model: Any, count: int) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, **generation_kwargs(tokenizer, count), min_new_tokens=count)
        return time.perf_counter() - started

    for model in (unmerged, merged):
        timed(model, 4)  # warm-up
    per_token: dict[str, list[float]] = {"adapter_at_inference": [], "merged": []}
    ratios = []
    for round_index in range(rounds):
        # ABBA order: a slow spell on the shared machine hits both models alike within a round.
        order = [("adapter_at_inference", unmerged), ("merged", merged)]
        if round_index % 2:
            order.reverse()
        this_round = {}
        for name, model in order:
            one, many = timed(model, 1), timed(model, tokens)
            this_round[name] = (many - one) / (tokens - 1) * 1000
            per_token[name].append(this_round[name])
        ratios.append(this_round["adapter_at_inference"] / this_round["merged"])
    best = {name: min(values) for name, values in per_token.items()}
    return {
        "threads": threads,
        "generated_tokens": tokens,
        "rounds": rounds,
        "per_token_ms_best": {k: round(v, 2) for k, v in best.items()},
        "per_token_ms_median": {k: round(statistics.median(v), 2) for k, v in per_token.items()},
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio_median_of_rounds": round(statistics.median(ratios), 3),
        "ratio_best": round(best["adapter_at_inference"] / best["merged"], 3),
    }


# --- part 2: ten adapters resident over one base -------------------------------------------------------


def resident_part(base_dir: Path, adapter_dirs: list[Path], threads: int) -> dict[str, Any]:
    import peft  # noqa: F401 - library code loaded before the baseline
    import torch
    import transformers  # noqa: F401

    from webapp.catalog.profiling import touch_weights
    from webapp.playground.resident import ResidentModels, ServedModel

    torch.set_num_threads(threads)
    pool = ResidentModels(max_groups=1, max_adapters=len(adapter_dirs))
    specs = [ServedModel(f"a{i}", f"a{i}", "adapter", d, "smollm2", base_dir) for i, d in enumerate(adapter_dirs)]
    baseline = rss()
    base_spec = ServedModel("smollm2", "base", "base", base_dir)
    with pool.use(base_spec) as served:
        touch_weights(served.model)  # memory-mapped weights count once read
    base_resident = rss() - baseline
    first_loads = []
    for spec in specs:
        started = time.perf_counter()
        with pool.use(spec) as served:
            first_loads.append(time.perf_counter() - started)
            touch_weights(served.model)
    all_resident = rss() - baseline
    adapters_bytes = sum(adapter_weight_bytes(d) for d in adapter_dirs)
    swaps = []
    for _ in range(5):
        for spec in specs:
            started = time.perf_counter()
            with pool.use(spec) as served:
                assert "hot-swapped" in served.mode
            swaps.append(time.perf_counter() - started)
    assert pool.loads == 1
    model = pool.groups[next(iter(pool.groups))].model
    # Exact tensor bytes next to RSS: RSS can grow less than the adapters' bytes when freed load buffers are reused.
    tensor_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    budget = (base_resident + adapters_bytes) * 1.05
    return {
        "adapters": len(adapter_dirs),
        "base_resident_bytes": base_resident,
        "adapters_weight_bytes": adapters_bytes,
        "resident_bytes_with_adapters": all_resident,
        "parameter_tensor_bytes_with_adapters": tensor_bytes,
        "budget_bytes": int(budget),
        "within_budget": all_resident <= budget,
        "overhead_over_base_plus_adapters": round(all_resident / (base_resident + adapters_bytes) - 1, 4),
        "adapter_first_load_ms_median": round(statistics.median(first_loads) * 1000, 1),
        "swap_ms_median": round(statistics.median(swaps) * 1000, 3),
        "swap_ms_max": round(max(swaps) * 1000, 3),
    }


def deployment_table(base_dir: Path, adapter_dir: Path, threads: int) -> dict[str, Any]:
    """The catalog's deployment table for one SmolLM2 LoRA: the same code the profiling task runs on a worker."""
    from webapp.catalog import profiling

    def size(folder: Path, pattern: str = "*") -> int:
        return sum(p.stat().st_size for p in folder.glob(pattern) if p.is_file())

    storage = profiling.StorageFacts(
        model_bytes=size(adapter_dir), base_bytes=size(base_dir), base_weight_bytes=size(base_dir, "*.safetensors"),
    )
    table = profiling.profile(adapter_dir, base_dir, storage, threads=threads)
    keep = ("mode", "storage_bytes", "own_storage_bytes", "load_seconds", "resident_bytes", "adapter_resident_bytes",
            "latency_ms", "unit", "base_files_shared", "base_memory_shared")
    return {"unit": table["unit"], "modes": [{k: row.get(k) for k in keep} for row in table["modes"]]}


def in_fresh_process(part: str, **kwargs: Any) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, __file__, "--part", part, "--args", json.dumps(kwargs)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    if completed.returncode != 0:
        raise SystemExit(f"{part} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    # One thread: on a shared machine, two OpenMP threads per process oversubscribe the cores and time explodes.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--adapters", type=int, default=10)
    parser.add_argument("--part", default="")
    parser.add_argument("--args", default="{}")
    options = parser.parse_args()
    if options.part:  # a child process measuring one part
        args = json.loads(options.args)
        if options.part == "latency":
            result = latency_part(Path(args["base_dir"]), Path(args["adapter_dir"]), args["threads"], args["rounds"], args["tokens"])
        else:
            result = resident_part(Path(args["base_dir"]), [Path(p) for p in args["adapter_dirs"]], args["threads"])
        print(json.dumps(result))
        return

    import torch

    base_dir = smollm2_folder()
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        adapters = make_adapters(base_dir, Path(scratch), options.adapters)
        latency = in_fresh_process("latency", base_dir=str(base_dir), adapter_dir=str(adapters[0]),
                                   threads=options.threads, rounds=options.rounds, tokens=options.tokens)
        resident = in_fresh_process("resident", base_dir=str(base_dir), adapter_dirs=[str(a) for a in adapters],
                                    threads=options.threads)
        table = deployment_table(base_dir, adapters[0], options.threads)
    report = {
        "model": "SmolLM2-135M-Instruct (float32, de-quantized from the bundled GGUF)",
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "latency": latency,
        "resident": resident,
        "deployment_table": table,
        "targets": {
            "latency_ratio_at_most_1.15": latency["ratio_best"] <= 1.15,
            "memory_within_base_plus_adapters_plus_5pct": resident["within_budget"],
            "swap_at_most_50ms": resident["swap_ms_max"] <= 50,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
