"""A reporter asking to stop ends the run within one optimizer step, with no artifact; progress is reported."""

from __future__ import annotations

from pathlib import Path

from jobs.training.engine import train
from tests.training.conftest import classification_rows, instruction_rows, make_spec


class StopAfter:
    """Records progress and asks to stop once `limit` steps have been reported."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.steps: list[int] = []
        self.evaluations: list[dict[str, float]] = []

    def progress(self, step, total_steps, epoch, loss, learning_rate, metrics) -> None:  # type: ignore[no-untyped-def]
        if loss is not None:
            self.steps.append(step)
            assert total_steps >= step
        if metrics:
            self.evaluations.append(metrics)

    def should_stop(self) -> bool:
        return bool(self.steps) and self.steps[-1] >= self.limit


def test_should_stop_ends_training_within_one_step(tmp_path: Path, tiny_lm: Path) -> None:
    reporter = StopAfter(limit=3)
    result = train(make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(64), epochs=3), reporter)
    assert result.stopped
    assert result.artifact_dir is None
    assert result.summary.global_step <= 4
    assert "tuned" not in result.metrics and "base" in result.metrics


def test_should_stop_is_checked_between_accumulation_substeps(tmp_path: Path, tiny_encoder: Path) -> None:
    reporter = StopAfter(limit=1)
    spec = make_spec(
        tmp_path, tiny_encoder, "classification", "full", classification_rows(64), gradient_accumulation_steps=4
    )
    result = train(spec, reporter)
    assert result.stopped
    assert result.summary.global_step <= 2


def test_progress_reports_every_step_and_each_evaluation(tmp_path: Path, tiny_lm: Path) -> None:
    reporter = StopAfter(limit=10_000)
    result = train(make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(32), epochs=2), reporter)
    assert not result.stopped
    assert reporter.steps == list(range(1, result.summary.global_step + 1))
    assert len(reporter.evaluations) == 2  # the base model before training, the tuned one after
    assert "eval_d0_loss" in reporter.evaluations[0]
