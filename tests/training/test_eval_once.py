"""Evaluation runs once before and once after training, on a bounded sample; every phase is announced in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.training.engine import plan_run, train
from jobs.training.execution import plan_execution
from jobs.training.methods import load_config
from tests.training.conftest import classification_rows, instruction_rows, make_spec


class PhaseRecorder:
    """Records the phases the engine announces and the evaluations it reports."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int, int]] = []
        self.work: list[Any] = []
        self.evaluations: list[dict[str, float]] = []

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        if metrics:
            self.evaluations.append(metrics)

    def should_stop(self) -> bool:
        return False

    def phase(self, name: str, done: int, total: int, work: Any) -> None:
        self.phases.append((name, done, total))
        self.work.append(work)


def test_evaluation_happens_once_at_the_end_on_a_bounded_sample(tmp_path: Path, tiny_lm: Path) -> None:
    reporter = PhaseRecorder()
    spec = make_spec(
        tmp_path, tiny_lm, "sft", "lora", instruction_rows(24),
        validation_rows=instruction_rows(40), epochs=2, eval_max_rows=6, batch_size=4,
    )
    result = train(spec, reporter)

    # Trainer logs an evaluation inside training as eval_d0_*; the engine's own final one as eval_loss.
    assert not [entry for entry in result.log_history if "eval_d0_loss" in entry], "no evaluation inside training"
    assert len([entry for entry in result.log_history if "eval_loss" in entry]) == 1
    assert len(reporter.evaluations) == 2 and "eval_d0_loss" in reporter.evaluations[0]
    assert result.summary.eval_rows == 6
    names = [name for name, _, _ in reporter.phases]
    assert [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n] == [
        "loading", "evaluating_base", "training", "evaluating", "saving"
    ]
    # 6 sampled rows in batches of 4: two batches per evaluation, each one announced.
    assert ("evaluating_base", 2, 2) in reporter.phases and ("evaluating", 2, 2) in reporter.phases
    work = next(w for w in reporter.work if w is not None)
    assert work.eval_batches == 2 and work.train_steps == result.summary.global_step and work.tokens_per_step > 0
    assert 2.0 < work.train_cost < 2.5, "LoRA: a forward, a backward to the activations, few weight gradients"
    assert set(result.summary.phase_seconds) == {"loading", "evaluating_base", "training", "evaluating", "saving"}


def test_max_steps_caps_a_run_below_its_epochs(tmp_path: Path, tiny_encoder: Path) -> None:
    spec = make_spec(tmp_path, tiny_encoder, "classification", "full", classification_rows(64), epochs=3, max_steps=2)
    result = train(spec)
    assert result.summary.global_step == result.summary.planned_steps == 2


def test_plan_counts_what_the_packed_sft_run_trains(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(40), epochs=1, batch_size=2, max_length=48)
    hp = spec.hyperparameters
    execution = plan_execution("sft", "lora", load_config(tiny_lm).model_type, "cpu", packing=hp.packing)
    assert execution.packing_strategy, "the case under test is the packed one"
    plan = plan_run(tiny_lm, "sft", "lora", spec.datasets, hp, execution)

    result = train(spec)
    summary = result.summary
    assert plan.train_examples < plan.train_rows, "packing joined rows"
    assert (plan.train_rows, plan.train_examples, plan.steps) == (
        summary.train_rows, summary.train_examples, summary.global_step
    )
    assert (plan.trainable_parameters, plan.total_parameters) == (
        summary.trainable_parameters, summary.total_parameters
    )
    assert plan.eval_rows == summary.eval_rows
    assert plan.datasets[0].validation_source == "held_out"


def test_every_preset_states_its_evaluation_sample_and_quick_caps_causal_lm_steps() -> None:
    from jobs.training import resolve_hyperparameters

    quick = resolve_hyperparameters("sft", "lora", 135_000_000, {"preset": "quick"})
    balanced = resolve_hyperparameters("sft", "lora", 135_000_000, {"preset": "balanced"})
    assert quick.max_steps and quick.max_length <= 256 and quick.eval_max_rows < balanced.eval_max_rows
    assert balanced.max_steps is None, "beyond quick, the epochs decide"
    assert resolve_hyperparameters("classification", "lora", 22_000_000, {"preset": "quick"}).eval_max_rows > 0
