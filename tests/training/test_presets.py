"""Presets fill every hyperparameter; user overrides are checked, and unknown keys are an error, not ignored."""

from __future__ import annotations

import pytest

from jobs.training import Hyperparameters, SpecError, resolve_hyperparameters


def test_unknown_keys_are_rejected_with_every_problem_listed() -> None:
    with pytest.raises(SpecError) as caught:
        resolve_hyperparameters("sft", "lora", 135_000_000, {"epocs": 3, "lr": 1e-4, "batch_size": 0})
    messages = caught.value.messages
    assert any("Unknown hyperparameter 'epocs'" in m for m in messages)
    assert any("Unknown hyperparameter 'lr'" in m for m in messages)
    assert any("'batch_size' must be between" in m for m in messages)


def test_wrong_types_are_rejected() -> None:
    with pytest.raises(SpecError) as caught:
        resolve_hyperparameters("classification", "full", 22_000_000, {"packing": "yes", "seed": True})
    assert len(caught.value.messages) == 2


@pytest.mark.parametrize("preset", ["quick", "balanced", "thorough"])
def test_presets_give_complete_hyperparameters(preset: str) -> None:
    values = resolve_hyperparameters("sft", "lora", 135_000_000, {"preset": preset})
    assert isinstance(values, Hyperparameters)
    assert values.preset == preset
    assert values.lora_alpha == 2 * values.lora_r


def test_thorough_trains_longer_than_quick() -> None:
    quick = resolve_hyperparameters("classification", "lora", 22_000_000, {"preset": "quick"})
    thorough = resolve_hyperparameters("classification", "lora", 22_000_000, {"preset": "thorough"})
    assert thorough.epochs > quick.epochs
    assert thorough.lora_r > quick.lora_r
    assert thorough.early_stopping_patience


def test_overrides_win_over_the_preset() -> None:
    values = resolve_hyperparameters("sft", "lora", 135_000_000, {"learning_rate": 1e-5, "epochs": 1})
    assert values.learning_rate == 1e-5
    assert values.epochs == 1.0


def test_large_models_get_smaller_batches_with_accumulation() -> None:
    small = resolve_hyperparameters("sft", "full", 135_000_000, {})
    large = resolve_hyperparameters("sft", "full", 7_000_000_000, {})
    assert large.batch_size < small.batch_size
    assert large.batch_size * large.gradient_accumulation_steps == small.batch_size * small.gradient_accumulation_steps
    assert large.learning_rate < small.learning_rate


def test_prompt_tuning_needs_an_init_text() -> None:
    with pytest.raises(SpecError, match="prompt_init_text"):
        resolve_hyperparameters("sft", "prompt_tuning", 135_000_000, {})


@pytest.mark.parametrize(
    ("task", "method"), [("sft", "head"), ("classification", "prompt_tuning"), ("seq2seq", "head"), ("x", "lora")]
)
def test_impossible_task_method_pairs_are_rejected(task: str, method: str) -> None:
    with pytest.raises(SpecError):
        resolve_hyperparameters(task, method, 1_000_000, {"prompt_init_text": "hi"})
