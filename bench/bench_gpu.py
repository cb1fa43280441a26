"""GPU benchmark of the training engine against a bare PyTorch + peft loop: tokens/s, MFU, peak memory, estimate.

For every case (model x sequence length x batch x method) it runs, on the same random-init model folder and the
same synthetic tokens (every row longer than max_length, packing off, so every batch is B x L real tokens):

  engine  jobs.training.engine.train(spec, reporter), the function the worker calls, with the hyperparameters the
          product would run: jobs.training.memory.fit_to_memory on this device's usable memory (as plan_job does),
          which turns activation checkpointing on only when the run does not fit without it. The reporter times each
          logged step and stops the run after the warm-up and timed steps (the worker's cancel path).
  bare    the loop a tutorial writes: the engine's weight dtype, autocast and attention kernel for the method
          (jobs.training.execution.plan_execution; QLoRA in 4-bit NF4), peft LoRA on all-linear, AdamW (fused on
          CUDA), grad clipping 1.0, linear schedule, and TRL's fused chunked LM head as the engine's SFTTrainer uses
          (--full-logits-bare: the batch x length x vocab logits instead, as the old reference loop did). It runs
          without activation checkpointing; only when that runs out of CUDA memory does it retry with it. What the
          engine does beyond that is credited or charged to it: Liger's fused layers where liger-kernel imports,
          and the entropy and top-1 outputs its fused head computes for the metrics.

It reports steady-state tokens/s after warm-up, engine/bare, MFU (model FLOPs: 6N full, 4N adapters and freeze;
GPU_PEAK_TFLOPS, default 989 = H100 SXM bf16 dense), peak memory (engine: TrainingSummary.peak_memory_bytes, i.e.
torch.cuda.max_memory_allocated; bare: the same after a reset), and the plan's estimate (fit.estimate.total, for the
settings actually run) over the engine's peak. Then one line per target of the GPU issue: PASS, FAIL or not
measured, with the figure. Results go to OUT/bench_gpu.json and OUT/bench_gpu.txt after every case, so a run cut
short keeps what it measured; BENCH_GPU_LIMIT_S (or --limit-s, default 360 s) bounds the whole run: no case starts
that would not end in time, and per-case guards cut the timed loops short.

On a GPU host (no package index there; torch and transformers come with its image): fetch the engine's wheels here
with bench/gpu/fetch_wheels.sh (TRL, datasets, transformers/peft at the lock's versions and liger-kernel into
.gpu/engine, bitsandbytes into .gpu/bnb for the QLoRA cases), carry .gpu/engine and .gpu/bnb with the call, and run
`bash bench/gpu/run.sh`, which installs them into /tmp/site and runs

    PYTHONPATH=/tmp/site:$PWD python3 bench/bench_gpu.py --out "$OUT"

Command line (--case picks cases by a piece of their id, e.g. --case "1b@1024x4 full"; default out: $OUT, else
bench/out):

    python bench/bench_gpu.py [--tiny] [--out DIR] [--full-logits-bare] [--limit-s S] [--case TEXT ...]

--tiny (or BENCH_GPU_TINY=1): a 2-layer tiny Llama, 2 steps, every method, on the CPU (on the GPU where there is
one): a smoke test of the whole script for CI, well under a minute; its figures measure nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import logging
import math
import platform
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T_START = time.time()
GiB = 1024**3
RESERVE_S = 8.0  # kept free at the end for writing results
PEAK_FLOPS = float(os.environ.get("GPU_PEAK_TFLOPS", "989")) * 1e12
DEFAULT_LIMIT_S = 360.0


def log(message: str) -> None:
    print(f"[{time.time() - T_START:6.1f}s] {message}", flush=True)


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


@dataclass
class Settings:
    tiny: bool
    out_dir: Path
    full_logits_bare: bool
    deadline: float  # epoch seconds: no case starts when it would not end before this
    only: list[str]
    warmup: int
    timed: int
    engine_guard_s: float  # per case, training loop only (loading is not interruptible)
    bare_guard_s: float

    def left_s(self) -> float:
        return self.deadline - time.time()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    est_case_s: float  # rough cost of one case (plan + engine + bare), for the time budget
    est_build_s: float  # building and saving the random-init model folder, once


SMALL = ModelInfo("smollm2-135m", 576, 30, 9, 3, 1536, 49152, 22.0, 5.0)
BIG = ModelInfo("llama3.2-1b", 2048, 16, 32, 8, 8192, 128256, 45.0, 15.0)
TINY = ModelInfo("tiny-2l", 64, 2, 4, 2, 128, 512, 5.0, 1.0)


def case_list(tiny: bool) -> list[tuple[ModelInfo, int, int, str]]:
    """(model, seq_len, batch, method), most important first: later ones are skipped when time runs out."""
    if tiny:
        return [(TINY, 64, 2, method) for method in ("lora", "full", "freeze", "qlora")]
    cases = [(SMALL, 1024, 8, method) for method in ("lora", "full", "freeze")]
    cases += [(BIG, 1024, 4, method) for method in ("lora", "full", "freeze")]
    cases += [(SMALL, 1024, 8, "qlora"), (BIG, 1024, 4, "qlora")]
    cases += [(SMALL, 256, 32, method) for method in ("lora", "full", "freeze", "qlora")]  # 8192 tokens a step too
    return cases


# --- JSON shapes ------------------------------------------------------------------------------------------------


@dataclass
class PlanRecord:
    """What fit_to_memory decided for the engine run, as plan_job would for a job on this device."""

    activation_checkpointing: bool
    changes: list[str]
    fits: bool
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    learning_rate: float
    weight_decay: float
    trainable_layers: int
    budget_bytes: int
    estimate: dict[str, Any]  # MemoryEstimate.to_dict() for these settings
    execution: dict[str, Any]  # Execution.describe(): dtypes, attention, liger, fused head


@dataclass
class EngineRecord:
    steps: int
    timed_steps: int
    tokens_per_s: float | None  # steady state: real tokens between the end of warm-up and the last step
    tokens_per_step: int
    expected_tokens_per_step: int
    summary_tokens_per_s: float  # the engine's own figure: all of trainer.train(), first step included
    train_seconds: float
    wall_seconds: float  # whole train(): load, tokenize, base evaluation, steps, stop
    peak_bytes: int  # TrainingSummary.peak_memory_bytes: CUDA max_memory_allocated, CPU the process's ru_maxrss
    trainable_parameters: int
    total_parameters: int
    activation_checkpointing: bool
    stopped_by_reporter: bool
    guard_hit: bool
    loss_first: float | None
    loss_last: float | None


@dataclass
class BareRecord:
    steps: int
    timed_steps: int
    timed_seconds: float
    tokens_per_s: float | None
    peak_bytes: int | None  # CUDA max_memory_allocated since the loop's start; None on CPU
    trainable_parameters: int
    activation_checkpointing: bool
    out_of_memory_without_checkpointing: str | None
    loss_head: str  # "fused" (TRL's chunked head, as the engine) or "full logits"
    weight_dtype: str
    attention: str
    loss_first: float
    loss_last: float


@dataclass
class MfuRecord:
    formula: str
    flops_per_token: float
    engine: float | None
    bare: float | None
    engine_path: float | None  # freeze: only the FLOPs of the backward path that exists (see flops_per_token)
    bare_path: float | None


@dataclass
class CaseRecord:
    id: str
    model: str
    seq_len: int
    batch: int
    method: str
    status: str = "pending"
    params: int = 0
    plan: PlanRecord | None = None
    engine: EngineRecord | None = None
    bare: BareRecord | None = None
    engine_over_bare: float | None = None
    mfu: MfuRecord | None = None
    estimate_over_engine_peak: float | None = None
    allocated_before_bytes: int | None = None  # GPU memory still allocated when the case began (leak check)
    errors: list[str] = field(default_factory=list)


@dataclass
class TargetRecord:
    name: str
    verdict: str  # PASS, FAIL, not measured
    figure: str


# --- model folders ----------------------------------------------------------------------------------------------


def build_tokenizer(vocab_size: int) -> Any:
    """A word-level tokenizer whose vocabulary is the model's: 'w<id>' -> id, so synthetic text is random ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<pad>", "<eos>", "<bos>"]
    vocab = {token: index for index, token in enumerate(special)}
    for index in range(len(special), vocab_size):
        vocab[f"w{index}"] = index
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        model_max_length=1 << 20,
        padding_side="right",
    )


def build_model_dir(info: ModelInfo, root: Path, device: str) -> tuple[Path, int]:
    """A random-init Llama of `info`'s shape saved in bf16, and its parameter count (the tied head counted once)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = root / info.name
    started = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(info.vocab)
    tokenizer.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=info.vocab,
        hidden_size=info.hidden,
        intermediate_size=info.intermediate,
        num_hidden_layers=info.layers,
        num_attention_heads=info.heads,
        num_key_value_heads=info.kv_heads,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    params = sum(p.numel() for p in model.parameters())
    model.to(torch.bfloat16).save_pretrained(path)
    del model
    free_memory()
    log(f"built {info.name}: {params / 1e6:.1f}M parameters, bf16 in {time.perf_counter() - started:.1f}s")
    return path, params


def synthetic_ids(info: ModelInfo, rows: int, length: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(4, info.vocab, size=(rows, length), dtype=np.int64)


def write_rows(ids: Any, path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": [" ".join(f"w{int(i)}" for i in row) for row in ids]}), path)
    return path


def free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def device_memory_bytes(device: str) -> int:
    """What a worker registers as its memory (jobs/worker_registry.py): the GPU's total, or the machine's RAM."""
    import torch

    if device == "cuda":
        return int(torch.cuda.get_device_properties(0).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


# --- the plan ---------------------------------------------------------------------------------------------------


def requested_hyperparameters(method: str, batch: int, length: int, params: int, tiny: bool) -> Any:
    """The preset for the model's size with the case's shape; activation checkpointing is left to the plan."""
    from jobs.training import resolve_hyperparameters

    overrides: dict[str, Any] = {
        "epochs": 1,
        "batch_size": batch,
        "max_length": length,
        "packing": False,
        "save_steps": 10**6,
        "gradient_accumulation_steps": 1,
    }
    if method in ("lora", "qlora"):
        overrides.update(lora_r=16, lora_alpha=32, target_modules="all-linear")
    if tiny and method == "freeze":
        overrides["trainable_layers"] = 1  # the tiny model has 2 layers: freeze 1 so freeze differs from full
    return resolve_hyperparameters("text", method, params, overrides)


def plan_case(base: Path, method: str, hp: Any, device: str) -> Any:
    """fit_to_memory exactly as plan_job calls it for a worker with this device's memory and capabilities."""
    from jobs.training.execution import local_capabilities
    from jobs.training.memory import ModelShape, fit_to_memory, usable_memory

    cuda = device == "cuda"
    return fit_to_memory(
        ModelShape.from_dir(base),
        "text",
        method,
        hp,
        device,
        usable_memory(device, device_memory_bytes(device)),
        capabilities=local_capabilities() if cuda else None,
        base_model_dir=base,
    )


def plan_record(fit: Any) -> PlanRecord:
    hp = fit.hyperparameters
    return PlanRecord(
        activation_checkpointing=bool(hp.activation_checkpointing),
        changes=list(fit.changes),
        fits=bool(fit.fits),
        batch_size=hp.batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        max_length=hp.max_length,
        learning_rate=hp.learning_rate,
        weight_decay=hp.weight_decay,
        trainable_layers=hp.trainable_layers,
        budget_bytes=int(fit.budget),
        estimate=fit.estimate.to_dict(),
        execution=fit.execution.describe(),
    )


# --- engine -----------------------------------------------------------------------------------------------------


class BenchReporter:
    """The worker-side Reporter: timestamps each logged step and asks to stop after `target` steps or a guard."""

    def __init__(self, target: int, guard_s: float, cuda: bool) -> None:
        self.target = target
        self.guard_s = guard_s
        self.cuda = cuda
        self.times: list[tuple[int, float]] = []
        self.losses: list[float] = []
        self.last_step = 0
        self.first_check: float | None = None
        self.guard_hit = False

    def progress(
        self,
        step: int,
        total_steps: int,
        epoch: float,
        loss: float | None,
        learning_rate: float | None,
        metrics: dict[str, float],
    ) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()  # the step's kernels are done: the timestamp is the step's end
        if loss is not None:
            self.times.append((int(step), time.perf_counter()))
            self.losses.append(float(loss))
            self.last_step = int(step)

    def should_stop(self) -> bool:
        now = time.perf_counter()
        if self.first_check is None:
            self.first_check = now
        # Asked at the end of step k before step k is logged: stop at the target step, which still gets logged.
        if self.last_step + 1 >= self.target:
            return True
        if now - self.first_check > self.guard_s:
            self.guard_hit = True
            return True
        return False


def steady_rate(times: list[tuple[int, float]], warmup: int, tokens_per_step: int) -> tuple[float | None, int]:
    """tokens/s between the end of step `warmup` and the last logged step; (None, 0) with too few steps."""
    if len(times) < 2:
        return None, 0
    start = next(((s, t) for s, t in times if s >= warmup), None)
    if start is None or start == times[-1]:
        start = times[0]  # too few steps for the warm-up: use what there is (the step count says so)
    (s0, t0), (s1, t1) = start, times[-1]
    if s1 <= s0 or t1 <= t0:
        return None, 0
    return tokens_per_step * (s1 - s0) / (t1 - t0), s1 - s0


def run_engine(
    settings: Settings, info: ModelInfo, base: Path, method: str, hp: Any, ids: Any, workdir: Path, device: str
) -> EngineRecord:
    from jobs.training import DatasetFiles, TrainingSpec
    from jobs.training.engine import train

    steps = settings.warmup + settings.timed
    rows_per_step = hp.batch_size * hp.gradient_accumulation_steps
    train_file = write_rows(ids[: steps * rows_per_step], workdir / "train.parquet")
    validation_file = write_rows(ids[steps * rows_per_step : steps * rows_per_step + 2], workdir / "validation.parquet")
    spec = TrainingSpec(
        base_model_dir=base,
        task="text",
        method=method,
        datasets=[DatasetFiles("synthetic", train_file, validation_file)],
        hyperparameters=hp,
        output_dir=workdir / "artifact",
        checkpoint_dir=workdir / "checkpoints",
        device=device,
        base_model_name=info.name,
        job_id=f"bench-{info.name}-{hp.max_length}-{method}",
    )
    guard = max(5.0, min(settings.engine_guard_s, settings.left_s() - RESERVE_S - 10))
    reporter = BenchReporter(steps, guard, cuda=device == "cuda")
    started = time.perf_counter()
    result = train(spec, reporter)
    wall = time.perf_counter() - started
    summary = result.summary
    expected = rows_per_step * hp.max_length
    rate, timed_steps = steady_rate(reporter.times, settings.warmup, expected)
    record = EngineRecord(
        steps=summary.global_step,
        timed_steps=timed_steps,
        tokens_per_s=rate,
        tokens_per_step=summary.real_tokens // max(summary.global_step, 1),
        expected_tokens_per_step=expected,
        summary_tokens_per_s=summary.tokens_per_second,
        train_seconds=summary.train_seconds,
        wall_seconds=round(wall, 2),
        peak_bytes=summary.peak_memory_bytes,
        trainable_parameters=summary.trainable_parameters,
        total_parameters=summary.total_parameters,
        activation_checkpointing=bool(hp.activation_checkpointing),
        stopped_by_reporter=result.stopped,
        guard_hit=reporter.guard_hit,
        loss_first=reporter.losses[0] if reporter.losses else None,
        loss_last=reporter.losses[-1] if reporter.losses else None,
    )
    del result
    return record


# --- bare loop --------------------------------------------------------------------------------------------------


def enable_checkpointing(model: Any) -> None:
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def load_bare_model(base: Path, method: str, hp: Any, execution: Any, device: str, fused_head: bool) -> Any:
    """The base with the engine's storage dtype and attention kernel, and the method's trainable parameters."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    from jobs.training.methods import storage_kwargs

    model = AutoModelForCausalLM.from_pretrained(
        base, use_safetensors=True, trust_remote_code=False, **storage_kwargs(execution)
    )
    if execution.weight_dtype != "4bit":
        model.to(device)
    model.config.use_cache = False
    if method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if fused_head:
        from trl.trainer.utils import add_fused_lm_head

        add_fused_lm_head(model)  # before peft wraps the model, as TRL's SFTTrainer does
    if method in ("lora", "qlora"):
        config = LoraConfig(
            task_type="CAUSAL_LM",
            r=hp.lora_r,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules="all-linear",
        )
        model = get_peft_model(model, config)
    elif method == "freeze":
        # The engine's apply_freeze on a Llama with a tied head: the last blocks and the final norm train.
        for parameter in model.parameters():
            parameter.requires_grad = False
        for block in model.model.layers[-hp.trainable_layers :]:
            for parameter in block.parameters():
                parameter.requires_grad = True
        for parameter in model.model.norm.parameters():
            parameter.requires_grad = True
    model.train()
    return model


def run_bare(
    settings: Settings, base: Path, method: str, batch: int, length: int, ids: Any, hp: Any, execution: Any,
    device: str,
) -> BareRecord:
    """The plain loop on the same tokens, without activation checkpointing unless that runs out of CUDA memory."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    fused_head = not settings.full_logits_bare
    model = load_bare_model(base, method, hp, execution, device, fused_head)
    parameters = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in parameters)
    optimizer = torch.optim.AdamW(parameters, lr=hp.learning_rate, weight_decay=hp.weight_decay, fused=cuda)
    steps = settings.warmup + settings.timed
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, math.ceil(hp.warmup_ratio * steps)), steps)
    data = torch.as_tensor(ids[: steps * batch, :length]).to(device)
    mask = torch.ones((batch, length), dtype=torch.long, device=device)
    half = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(execution.autocast_dtype or "")
    autocast = torch.autocast("cuda", dtype=half) if cuda and half is not None else nullcontext()

    def step(index: int) -> Any:
        rows = data[(index % steps) * batch : (index % steps + 1) * batch]
        with autocast:
            if fused_head:
                loss = model(input_ids=rows, attention_mask=mask, labels=rows, fused_lm_head=True).loss
            else:
                loss = model(input_ids=rows, attention_mask=mask, labels=rows).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def timed_loop(guard_s: float) -> tuple[float | None, int, float, float, float]:
        first_loss = None
        for i in range(settings.warmup):
            loss = step(i)
            if first_loss is None:
                first_loss = loss.detach()
        sync()
        t0 = time.perf_counter()
        done = 0
        for i in range(settings.timed):
            loss = step(settings.warmup + i)
            done += 1
            if time.perf_counter() - t0 > guard_s:
                break
        sync()
        seconds = time.perf_counter() - t0
        rate = batch * length * done / seconds if done and seconds > 0 else None
        return rate, done, seconds, float(first_loss if first_loss is not None else loss), float(loss.detach())

    guard = max(5.0, min(settings.bare_guard_s, settings.left_s() - RESERVE_S - 8))
    out_of_memory: str | None = None
    try:
        rate, done, seconds, loss_first, loss_last = timed_loop(guard)
    except torch.cuda.OutOfMemoryError as error:
        out_of_memory = f"{error}".splitlines()[0][:200]
    if out_of_memory is not None:
        # Outside the except block: the traceback's frames, which hold the activations, are gone.
        log(f"bare: out of memory without activation checkpointing; retrying with it ({out_of_memory[:80]})")
        optimizer.zero_grad(set_to_none=True)
        free_memory()
        enable_checkpointing(model)
        torch.cuda.reset_peak_memory_stats()
        rate, done, seconds, loss_first, loss_last = timed_loop(guard)
    record = BareRecord(
        steps=settings.warmup + done,
        timed_steps=done,
        timed_seconds=round(seconds, 3),
        tokens_per_s=rate,
        peak_bytes=int(torch.cuda.max_memory_allocated()) if cuda else None,
        trainable_parameters=trainable,
        activation_checkpointing=out_of_memory is not None,
        out_of_memory_without_checkpointing=out_of_memory,
        loss_head="fused" if fused_head else "full logits",
        weight_dtype=execution.weight_dtype,
        attention=execution.attention,
        loss_first=loss_first,
        loss_last=loss_last,
    )
    return record  # the model, optimizer and batches go with this frame; the caller frees the memory


# --- figures ----------------------------------------------------------------------------------------------------


def flops_per_token(info: ModelInfo, params: int, method: str, trainable_layers: int) -> tuple[float, str, float]:
    """(model FLOPs per token by the usual rule, formula, FLOPs counting only the backward path for freeze)."""
    n = params
    if method == "full":
        return 6.0 * n, "6N", 6.0 * n
    if method in ("lora", "qlora"):
        return 4.0 * n, "4N (fwd 2N + input-grad bwd 2N; adapter FLOPs ignored)", 4.0 * n
    kv_dim = info.hidden // info.heads * info.kv_heads
    # q, o (h x h), k, v (h x kv_dim), gate/up/down (h x inter), two RMSNorms
    per_layer = 2 * info.hidden * info.hidden + 2 * info.hidden * kv_dim + 3 * info.hidden * info.intermediate
    per_layer += 2 * info.hidden
    top = per_layer * min(trainable_layers, info.layers) + info.hidden
    path = 2.0 * n + 4.0 * top + 2.0 * info.vocab * info.hidden
    return 4.0 * n, "4N (usual rule); backward-path-only: 2N + 4*N_top + 2*V*h", path


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value / GiB:.2f}"


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def ktok(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f}k"


def checkpointing(on: bool | None, oom: bool = False) -> str:
    if on is None:
        return "-"
    return ("on (OOM)" if oom else "on") if on else "off"


def evaluate_targets(cases: list[CaseRecord], measured: bool) -> list[TargetRecord]:
    """The GPU issue's targets, each with its figure; on a CPU or tiny run they are shown but not judged."""
    by_id = {case.id: case for case in cases}

    def verdict(ok: bool | None) -> str:
        if ok is None or not measured:
            return "not measured"
        return "PASS" if ok else "FAIL"

    targets = []
    compared = [c for c in cases if c.bare and not c.bare.activation_checkpointing and c.bare.tokens_per_s]
    if compared:
        ratios = [(c.engine_over_bare or 0.0, c.id) for c in compared]
        low, low_id = min(ratios)
        missing = [c.id for c in compared if c.engine_over_bare is None]
        figure = f"min {low:.2f} ({low_id}) over {len(compared)} cases"
        if missing:
            figure += f"; no engine figure for {', '.join(missing)}"
        targets.append(TargetRecord("engine >= 0.97x bare-noAC on every case that fits without checkpointing",
                                    verdict(low >= 0.97), figure))
    else:
        targets.append(TargetRecord("engine >= 0.97x bare-noAC on every case that fits without checkpointing",
                                    verdict(None), "no case"))

    def engine_mfu(case_id: str) -> float | None:
        case = by_id.get(case_id)
        return case.mfu.engine if case and case.mfu else None

    for name, case_id, floor in (("1B full MFU >= 35%", "llama3.2-1b@1024x4 full", 0.35),
                                 ("1B LoRA MFU >= 20%", "llama3.2-1b@1024x4 lora", 0.20)):
        value = engine_mfu(case_id)
        targets.append(TargetRecord(name, verdict(None if value is None else value >= floor),
                                    f"{fmt(value, '.1%')} ({case_id})"))
    small = by_id.get("smollm2-135m@1024x8 lora")
    rate = small.engine.tokens_per_s if small and small.engine else None
    targets.append(TargetRecord("135M LoRA 1024x8 >= 60k tok/s", verdict(None if rate is None else rate >= 60_000),
                                f"{ktok(rate)} tok/s (smollm2-135m@1024x8 lora)"))
    ratios2 = [(c.estimate_over_engine_peak, c.id) for c in cases if c.estimate_over_engine_peak is not None]
    if ratios2:
        (low2, low_id2), (high2, high_id2) = min(ratios2), max(ratios2)
        targets.append(TargetRecord(
            "estimate/peak in [0.9, 1.3]", verdict(low2 >= 0.9 and high2 <= 1.3),
            f"{low2:.2f} ({low_id2}) .. {high2:.2f} ({high_id2}) over {len(ratios2)} cases"))
    else:
        targets.append(TargetRecord("estimate/peak in [0.9, 1.3]", verdict(None), "no case"))
    return targets


def table(cases: list[CaseRecord], targets: list[TargetRecord], judged: bool) -> str:
    lines = []
    head = (f"{'case':<26} {'st':>5} {'eng tok/s':>10} {'bare tok/s':>10} {'e/b':>5} {'eng AC':>6} {'bare AC':>8} "
            f"{'eng MFU':>7} {'bare MFU':>8} {'eng pk':>7} {'bare pk':>7} {'est':>7} {'est/pk':>6}  status")
    lines += [head, "-" * len(head)]
    for case in cases:
        e, b, m = case.engine, case.bare, case.mfu
        steps = f"{e.timed_steps if e else '-'}/{b.timed_steps if b else '-'}" if e or b else "-"
        est = case.plan.estimate["total"] if case.plan else None
        lines.append(
            f"{case.id:<26} {steps:>5} {ktok(e.tokens_per_s if e else None):>10} "
            f"{ktok(b.tokens_per_s if b else None):>10} {fmt(case.engine_over_bare):>5} "
            f"{checkpointing(case.plan.activation_checkpointing if case.plan else None):>6} "
            f"{checkpointing(b.activation_checkpointing if b else None, bool(b and b.activation_checkpointing)):>8} "
            f"{fmt(m.engine if m else None, '.1%'):>7} {fmt(m.bare if m else None, '.1%'):>8} "
            f"{gib(e.peak_bytes if e else None):>7} {gib(b.peak_bytes if b else None):>7} {gib(est):>7} "
            f"{fmt(case.estimate_over_engine_peak):>6}  {case.status}"
        )
    lines.append("")
    head2 = (f"{'case':<26} {'eng wall s':>10} {'eng train s':>11} {'eng tok/s (train())':>19} {'eng loss':>15} "
             f"{'bare loss':>15} {'trainable e/b':>21} {'alloc before':>12}  plan changes")
    lines += [head2, "-" * len(head2)]
    for case in cases:
        e, b = case.engine, case.bare
        if not e and not b:
            continue
        eloss = f"{fmt(e.loss_first, '.3f')}->{fmt(e.loss_last, '.3f')}" if e else "-"
        bloss = f"{fmt(b.loss_first, '.3f')}->{fmt(b.loss_last, '.3f')}" if b else "-"
        trainable = f"{e.trainable_parameters if e else '-'}/{b.trainable_parameters if b else '-'}"
        changes = " | ".join(case.plan.changes) if case.plan and case.plan.changes else "none"
        lines.append(
            f"{case.id:<26} {fmt(e.wall_seconds if e else None, '.1f'):>10} "
            f"{fmt(e.train_seconds if e else None, '.1f'):>11} {ktok(e.summary_tokens_per_s if e else None):>19} "
            f"{eloss:>15} {bloss:>15} {trainable:>21} {gib(case.allocated_before_bytes):>12}  {changes[:120]}"
        )
    lines += [
        "",
        "st = timed steps engine/bare (after warm-up); tok/s = real tokens per second over the timed steps;",
        "e/b = engine/bare; eng AC = activation checkpointing as jobs.training.memory.fit_to_memory planned it for this",
        "  device's usable memory; bare AC = off unless the bare loop ran out of memory without it (then 'on (OOM)');",
        "MFU = model FLOPs/s / peak (GPU_PEAK_TFLOPS); model FLOPs per token: full 6N, lora/qlora/freeze 4N (JSON",
        "  mfu.*_path counts only freeze's backward path); attention FLOPs and checkpointing's recompute not counted;",
        "pk = peak memory, GiB: engine TrainingSummary.peak_memory_bytes (CUDA max_memory_allocated; on CPU the whole",
        "  process's ru_maxrss, not comparable with the estimate), bare max_memory_allocated (CUDA only);",
        "est = the plan's estimate for the settings run (fit.estimate.total), est/pk = est / engine peak;",
        "eng wall s = whole train() (load, tokenize, base eval, steps, stop); eng train s, tok/s (train()) = the",
        "  engine's own TrainingSummary over all of trainer.train(); alloc before = GPU memory held at the case's start.",
        "",
        "targets:" if judged else "targets (not judged: a CPU or tiny run measures nothing; figures for the record):",
    ]
    lines += [f"  {t.verdict:<12}  {t.name}: {t.figure}" for t in targets]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------------------


def write_results(settings: Settings, meta: dict[str, Any], cases: list[CaseRecord]) -> list[TargetRecord]:
    judged = meta["device"] != "cpu" and not settings.tiny
    targets = evaluate_targets(cases, measured=judged)
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    results = {"meta": meta, "cases": [asdict(c) for c in cases], "targets": [asdict(t) for t in targets]}
    (settings.out_dir / "bench_gpu.json").write_text(json.dumps(results, indent=2, default=str))
    (settings.out_dir / "bench_gpu.txt").write_text(table(cases, targets, judged) + "\n")
    return targets


def lock_pins() -> dict[str, str]:
    """The versions the project tests with (requirements.lock, requirements-gpu.txt) of what the engine imports."""
    names = {"transformers", "trl", "datasets", "peft", "accelerate", "liger-kernel", "bitsandbytes", "fsspec"}
    pins = {}
    for file in ("requirements.lock", "requirements-gpu.txt"):
        path = ROOT / file
        for line in path.read_text().splitlines() if path.exists() else []:
            name, _, pinned = line.strip().partition("==")
            if pinned and name.lower() in names:
                pins[name.lower()] = pinned
    return pins


def environment(settings: Settings, device: str) -> dict[str, Any]:
    import torch

    names = ["torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "liger-kernel",
             "flash_attn", "huggingface_hub", "tokenizers", "safetensors", "pyarrow", "fsspec", "numpy"]
    versions = {name: version(name) for name in names}
    meta: dict[str, Any] = {
        "python": platform.python_version(),
        "versions": versions,
        "pin_mismatches": [f"{n} {versions.get(n, '-')} (lock: {p})" for n, p in lock_pins().items()
                           if versions.get(n, "-") not in ("-", p)],
        "torch_cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "device_memory_bytes": device_memory_bytes(device),
        "tiny": settings.tiny,
        "bare_loss_head": "full logits" if settings.full_logits_bare else "fused",
        "peak_tflops": PEAK_FLOPS / 1e12,
        "warmup_steps": settings.warmup,
        "timed_steps": settings.timed,
    }
    if device == "cuda":
        from jobs.training.execution import local_capabilities

        meta["capabilities"] = local_capabilities().to_dict()
    return meta


def run_case(
    settings: Settings, info: ModelInfo, base: Path, params: int, case: CaseRecord, scratch: Path, device: str
) -> None:
    """Plan, engine, bare loop and figures for one case; every failure lands in case.errors, none escapes."""
    import torch

    method, length, batch = case.method, case.seq_len, case.batch
    cuda = device == "cuda"
    steps = settings.warmup + settings.timed
    ids = synthetic_ids(info, steps * batch + 2, length + 8, seed=1234 + length)
    hp = requested_hyperparameters(method, batch, length, params, settings.tiny)
    fit = plan_case(base, method, hp, device)
    case.plan = plan_record(fit)
    log(f"plan: activation checkpointing {'on' if case.plan.activation_checkpointing else 'off'}, estimate "
        f"{gib(fit.estimate.total)} GiB of {gib(fit.budget)} GiB usable; changes: {fit.changes or 'none'}")
    workdir = scratch / f"case-{info.name}-{length}-{method}"
    workdir.mkdir(parents=True, exist_ok=True)
    free_memory()
    if cuda:
        case.allocated_before_bytes = int(torch.cuda.memory_allocated())
    if not fit.fits:
        case.errors.append(f"engine: refused, as plan_job would: needs {gib(fit.estimate.total)} GiB")
    else:
        try:
            engine = run_engine(settings, info, base, method, fit.hyperparameters, ids, workdir, device)
            case.engine = engine
            log(f"engine: {ktok(engine.tokens_per_s)} tok/s over {engine.timed_steps} steps, peak "
                f"{gib(engine.peak_bytes)} GiB, wall {engine.wall_seconds}s, loss {fmt(engine.loss_first, '.3f')} -> "
                f"{fmt(engine.loss_last, '.3f')}")
            if engine.tokens_per_step != engine.expected_tokens_per_step:
                case.errors.append(f"engine tokens/step {engine.tokens_per_step} != {engine.expected_tokens_per_step}")
        except Exception as error:
            if type(error).__name__ != "SpecError":  # the engine's own refusal says enough in one line
                traceback.print_exc()
            case.errors.append(f"engine: {type(error).__name__}: {error}"[:400])
    shutil.rmtree(workdir, ignore_errors=True)
    free_memory()
    if settings.left_s() < RESERVE_S + 12:
        case.errors.append("bare: skipped (time budget)")
    else:
        try:
            # The bare loop takes the requested batch with no accumulation, whatever the plan changed.
            bare = run_bare(settings, base, method, batch, length, ids, hp, fit.execution, device)
            case.bare = bare
            log(f"bare: {ktok(bare.tokens_per_s)} tok/s over {bare.timed_steps} steps, checkpointing "
                f"{checkpointing(bare.activation_checkpointing)}, peak {gib(bare.peak_bytes)} GiB, loss "
                f"{bare.loss_first:.3f} -> {bare.loss_last:.3f}")
        except Exception as error:
            traceback.print_exc()
            case.errors.append(f"bare: {type(error).__name__}: {error}"[:400])
        free_memory()
    engine_rate = case.engine.tokens_per_s if case.engine else None
    bare_rate = case.bare.tokens_per_s if case.bare else None
    case.engine_over_bare = ratio(engine_rate, bare_rate)
    if cuda:
        per_token, formula, per_token_path = flops_per_token(info, params, method, hp.trainable_layers)
        case.mfu = MfuRecord(
            formula=formula,
            flops_per_token=per_token,
            engine=ratio(per_token * (engine_rate or 0), PEAK_FLOPS),
            bare=ratio(per_token * (bare_rate or 0), PEAK_FLOPS),
            engine_path=ratio(per_token_path * (engine_rate or 0), PEAK_FLOPS),
            bare_path=ratio(per_token_path * (bare_rate or 0), PEAK_FLOPS),
        )
    case.estimate_over_engine_peak = ratio(fit.estimate.total, case.engine.peak_bytes if case.engine else None)


def parse_settings(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tiny", action="store_true", default=os.environ.get("BENCH_GPU_TINY") == "1",
                        help="2-layer model, 2 steps, every method: the CPU smoke test (also BENCH_GPU_TINY=1)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "out"),
                        help="folder for bench_gpu.json and bench_gpu.txt (default $OUT, else bench/out)")
    parser.add_argument("--full-logits-bare", action="store_true",
                        help="bare loop computes the loss through the full logits, as the old reference script did")
    parser.add_argument("--limit-s", type=float, default=float(os.environ.get("BENCH_GPU_LIMIT_S") or DEFAULT_LIMIT_S),
                        help=f"wall-clock bound of the whole run (also BENCH_GPU_LIMIT_S; default {DEFAULT_LIMIT_S:.0f})")
    parser.add_argument("--case", action="append", default=[], metavar="TEXT",
                        help="run only the cases whose id contains TEXT (repeatable), e.g. '1b@1024x4 full'")
    arguments = parser.parse_args(argv)
    tiny = bool(arguments.tiny)
    return Settings(
        tiny=tiny,
        out_dir=arguments.out,
        full_logits_bare=arguments.full_logits_bare,
        deadline=T_START + arguments.limit_s - 4,
        only=list(arguments.case),
        warmup=1 if tiny else 5,
        timed=1 if tiny else 20,
        engine_guard_s=60.0 if tiny else 40.0,
        bare_guard_s=60.0 if tiny else 30.0,
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_settings(argv)
    if settings.tiny:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # a shared CI machine: before torch is imported
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    logging.getLogger("jobs.training").setLevel(logging.WARNING if settings.tiny else logging.INFO)

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not settings.tiny and device != "cuda":
        log("ERROR: no CUDA device; --tiny (BENCH_GPU_TINY=1) is the CPU smoke test")
        return 2
    meta = environment(settings, device)
    log(f"python {meta['python']} | torch {meta['versions']['torch']} (cuda {meta['torch_cuda']}) | {meta['device']}"
        f" | bare loss head: {meta['bare_loss_head']}")
    log("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    if meta["pin_mismatches"]:
        log("WARNING not the lock's versions: " + "; ".join(meta["pin_mismatches"]))
    bnb = device == "cuda" and importlib.util.find_spec("bitsandbytes") is not None

    cases: list[CaseRecord] = []
    built: dict[str, tuple[Path, int]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    try:
        for info, length, batch, method in case_list(settings.tiny):
            case_id = f"{info.name}@{length}x{batch} {method}"
            if settings.only and not any(text in case_id for text in settings.only):
                continue
            case = CaseRecord(id=case_id, model=info.name, seq_len=length, batch=batch, method=method)
            cases.append(case)
            if method == "qlora" and device != "cuda":
                case.status = "skipped: QLoRA needs CUDA (bitsandbytes 4-bit weights)"
            elif method == "qlora" and not bnb:
                case.status = "skipped: bitsandbytes is not installed"
            elif settings.left_s() < info.est_case_s + (0 if info.name in built else info.est_build_s) + RESERVE_S:
                case.status = f"skipped: time budget ({settings.left_s():.0f}s left)"
            if case.status != "pending":
                log(f"{case_id}: {case.status}")
                write_results(settings, meta, cases)
                continue
            log(f"=== {case_id} ({settings.left_s():.0f}s left)")
            try:
                if info.name not in built:
                    built[info.name] = build_model_dir(info, scratch / "models", device)
                base, params = built[info.name]
                case.params = params
                run_case(settings, info, base, params, case, scratch, device)
            except Exception as error:
                traceback.print_exc()
                case.errors.append(f"setup: {type(error).__name__}: {error}"[:400])
            case.status = "ok" if not case.errors else "; ".join(case.errors)[:160]
            write_results(settings, meta, cases)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta["total_seconds"] = round(time.time() - T_START, 1)
    targets = write_results(settings, meta, cases)
    print()
    print(table(cases, targets, judged=meta["device"] != "cpu" and not settings.tiny))
    print()
    log(f"results: {settings.out_dir / 'bench_gpu.json'} ({meta['total_seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
