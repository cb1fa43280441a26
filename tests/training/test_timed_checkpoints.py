"""Checkpoints come every so many seconds of training too, so a kill loses about a minute at most."""

from __future__ import annotations

from pathlib import Path

from jobs.training.engine import train
from tests.training.conftest import instruction_rows, make_spec


def checkpoints(spec) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(path.name for path in Path(spec.checkpoint_dir).glob("checkpoint-*"))


def test_a_run_shorter_than_save_steps_still_checkpoints_on_time(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(16), epochs=2, save_steps=1000)
    spec.checkpoint_seconds = 1e-6  # every step, for the test; 60 s in production
    result = train(spec)
    last = result.summary.global_step
    assert last >= 3
    # Trainer always saves the last step; the one before it exists only because time asked for it
    # (save_total_limit keeps two).
    assert checkpoints(spec) == [f"checkpoint-{last - 1}", f"checkpoint-{last}"]


def test_without_timed_checkpoints_save_steps_alone_decides(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(16), epochs=2, save_steps=1000)
    spec.checkpoint_seconds = 0
    result = train(spec)
    assert checkpoints(spec) == [f"checkpoint-{result.summary.global_step}"]  # only Trainer's final save
