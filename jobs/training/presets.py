"""Preset hyperparameters per task, method and model size, and validation of user overrides."""

from __future__ import annotations

from typing import Any

from jobs.training import registry
from jobs.training.registry import METHODS, METHODS_BY_TASK, TASKS
from jobs.training.spec import HYPERPARAMETERS, PRESETS, Hyperparameters, SpecError

# Learning rates per method and task family. Why these values:
# - generative (causal LM SFT / text): 2e-5 full (SmolLM2's own SFT recipe sits at 1e-5..3e-5), 2e-4 LoRA (peft
#   and QLoRA paper defaults), 3e-2 prompt tuning (soft prompts need large steps; Lester et al. used 0.3 with
#   Adafactor). freeze trains fewer weights and takes 2x the full rate.
# - encoder classifiers: measured on all-MiniLM-L6-v2 with the 150-row sentiment set in tests/training/data and
#   the quick preset (24 optimizer steps), accuracy on 30 held-out rows, majority class 0.37:
#       full 5e-5 -> 0.53, 1e-4 -> 0.97 | freeze 1e-4 -> 0.50, 5e-4 -> 0.93 | lora 1e-3 -> 0.37, 3e-3 -> 0.93
#       head 1e-3 -> 0.37, 3e-2 -> 0.63.
#   Small uploads give few steps, and the new head starts random, so the rates sit above the BERT paper's
#   2e-5..5e-5 (tuned for 100k-row GLUE sets over thousands of steps). Frozen CLS features of a sentence-embedding
#   model are weak for a linear probe: head learns slowest, which is what the method is.
# - seq2seq: 3e-4 full (T5 is tuned at 1e-3 with Adafactor; AdamW wants less), 1e-3 LoRA.
_LEARNING_RATES: dict[str, dict[str, float]] = {
    "full": {"generative": 2e-5, "encoder": 1e-4, "seq2seq": 3e-4, "preference": 1e-6},
    "freeze": {"generative": 4e-5, "encoder": 3e-4, "seq2seq": 5e-4, "preference": 2e-6},
    "lora": {"generative": 2e-4, "encoder": 3e-3, "seq2seq": 1e-3, "preference": 5e-5},
    "qlora": {"generative": 2e-4, "encoder": 3e-3, "seq2seq": 1e-3, "preference": 5e-5},
    "prompt_tuning": {"generative": 3e-2, "encoder": 3e-2, "seq2seq": 3e-2, "preference": 3e-2},
    "head": {"generative": 3e-2, "encoder": 3e-2, "seq2seq": 3e-2, "preference": 3e-2},
}

# Epochs per preset: generative SFT overfits past ~3 epochs, while classifiers on small uploads (hundreds of
# rows, a handful of steps per epoch) need more passes to move a random head.
_EPOCHS: dict[str, dict[str, float]] = {
    "generative": {"quick": 1, "balanced": 2, "thorough": 3},
    "encoder": {"quick": 3, "balanced": 5, "thorough": 10},
    "seq2seq": {"quick": 2, "balanced": 4, "thorough": 8},
    "preference": {"quick": 1, "balanced": 2, "thorough": 3},
}

# Sequence lengths: SFT rows are long, labels and tags short; thorough keeps more of the long tail.
_MAX_LENGTH: dict[str, dict[str, int]] = {
    "generative": {"quick": 256, "balanced": 1024, "thorough": 2048},
    "encoder": {"quick": 128, "balanced": 256, "thorough": 512},
    "seq2seq": {"quick": 256, "balanced": 512, "thorough": 512},
    # Prompt plus one answer; each pair is two such sequences.
    "preference": {"quick": 256, "balanced": 1024, "thorough": 2048},
}

# Quick is "a first result in minutes" on a CPU worker (docs/benchmarks.md, "Quick on the bundled models"): on two
# cores SmolLM2-135M trains ~100 tokens/s with LoRA, so a causal LM's quick run is capped in steps and reads short
# sequences. Encoders and seq2seq models are small enough for the epochs to decide.
_MAX_STEPS: dict[str, dict[str, int | None]] = {
    "generative": {"quick": 12, "balanced": None, "thorough": None},
    "encoder": {"quick": None, "balanced": None, "thorough": None},
    "seq2seq": {"quick": 60, "balanced": None, "thorough": None},
    "preference": {"quick": 12, "balanced": None, "thorough": None},
}

# Validation rows each evaluation reads (a seeded sample, the same before and after training). Causal LM and seq2seq
# evaluation (long sequences, generation) costs far more per row than a classifier's.
_EVAL_MAX_ROWS: dict[str, dict[str, int]] = {
    "generative": {"quick": 24, "balanced": 200, "thorough": 500},
    "encoder": {"quick": 200, "balanced": 500, "thorough": 2000},
    "seq2seq": {"quick": 32, "balanced": 200, "thorough": 500},
    "preference": {"quick": 24, "balanced": 200, "thorough": 500},
}

# LoRA rank grows with the preset; alpha = 2r keeps the effective scale constant (rsLoRA-style intuition).
_LORA_RANK = {"quick": 8, "balanced": 16, "thorough": 32}

def task_family(task: str) -> str:
    """Which preset family a task belongs to."""
    return registry.task(task).preset_family


def _batch_size(family: str, parameter_count: int) -> tuple[int, int]:
    """Per-device batch size and accumulation: the effective batch stays ~16 while memory shrinks with size."""
    if family == "preference":
        # Each pair is two sequences (chosen and rejected): half the rows per micro-batch, twice the accumulation.
        size, accumulation = _batch_size("generative", parameter_count)
        return max(size // 2, 1), accumulation * 2
    base = 16 if family == "encoder" else 8
    if parameter_count >= 6_000_000_000:
        return 2, base // 2
    if parameter_count >= 1_000_000_000:
        return 4, base // 4
    return base, 1


def validate_overrides(overrides: dict[str, Any]) -> list[str]:
    """Problems with user-given hyperparameters, one sentence each; empty when all are fine."""
    known = HYPERPARAMETERS
    problems = []
    for key, value in overrides.items():
        if key not in known:
            problems.append(f"Unknown hyperparameter '{key}'; known ones are: {', '.join(sorted(known))}.")
            continue
        allowed = known[key]["types"]
        # bool is an int in Python; a true/false where a number is expected is a mistake, not a 1.
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            names = " or ".join(t.__name__ for t in allowed if t is not type(None))
            problems.append(f"Hyperparameter '{key}' must be a {names}, not {value!r}.")
            continue
        if known[key]["range"] and isinstance(value, (int, float)):
            low, high = known[key]["range"]
            if not low <= value <= high:
                problems.append(f"Hyperparameter '{key}' must be between {low:g} and {high:g}, not {value!r}.")
        if key == "preset" and value not in PRESETS:
            problems.append(f"Preset must be one of {', '.join(PRESETS)}, not {value!r}.")
        if key == "objective" and value not in registry.OBJECTIVES:
            problems.append(f"Objective must be one of {', '.join(registry.OBJECTIVES)}, not {value!r}.")
        if key == "target_modules" and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            problems.append("Hyperparameter 'target_modules' must be a list of module names.")
        if key == "target_modules" and isinstance(value, str) and value != "all-linear":
            problems.append("Hyperparameter 'target_modules' must be a list of names or the string 'all-linear'.")
    return problems


def resolve_hyperparameters(
    task: str, method: str, parameter_count: int, overrides: dict[str, Any] | None = None
) -> Hyperparameters:
    """The preset's values for this task, method and model size, with the user's overrides on top.

    Raises SpecError listing every unknown key, wrong type or out-of-range value at once.
    """
    overrides = dict(overrides or {})
    problems = []
    if task not in TASKS:
        problems.append(f"Unknown task '{task}'; choose one of {', '.join(TASKS)}.")
    if method not in METHODS:
        problems.append(f"Unknown method '{method}'; choose one of {', '.join(METHODS)}.")
    elif task in TASKS and method not in METHODS_BY_TASK[task]:
        problems.append(
            f"Method '{method}' does not apply to task '{task}'; choose one of {', '.join(METHODS_BY_TASK[task])}."
        )
    problems += validate_overrides(overrides)
    if problems:
        raise SpecError(problems)

    preset = overrides.get("preset", "balanced")
    family = task_family(task)
    batch_size, accumulation = _batch_size(family, parameter_count)
    learning_rate = _LEARNING_RATES[method][family]
    if parameter_count >= 1_000_000_000 and method in ("full", "freeze"):
        # Larger models diverge at small-model learning rates; halving is the common practice.
        learning_rate /= 2
    rank = _LORA_RANK[preset]
    values = Hyperparameters(
        epochs=_EPOCHS[family][preset],
        learning_rate=learning_rate,
        batch_size=batch_size,
        max_length=_MAX_LENGTH[family][preset],
        warmup_ratio=0.1 if family == "encoder" else 0.03,
        weight_decay=0.01 if method in ("full", "freeze") else 0.0,
        seed=42,
        eval_fraction=0.1,
        # Packing only applies to causal LM tasks; elsewhere it is ignored.
        packing=family == "generative",
        lora_r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.05 if preset != "quick" else 0.0,
        target_modules=None,
        trainable_layers=2,
        prompt_init_text=None,
        num_virtual_tokens=16 if preset != "thorough" else 32,
        preset=preset,
        gradient_accumulation_steps=accumulation,
        early_stopping_patience=3 if preset == "thorough" else None,
        save_steps=200 if preset == "quick" else 100,
        eval_max_rows=_EVAL_MAX_ROWS[family][preset],
        max_steps=_MAX_STEPS[family][preset],
    )
    for key, value in overrides.items():
        setattr(values, key, float(value) if key in ("epochs", "learning_rate") else value)
    if method == "prompt_tuning" and not values.prompt_init_text:
        raise SpecError("Prompt tuning needs 'prompt_init_text': a sentence describing the task, to start from.")
    return values
