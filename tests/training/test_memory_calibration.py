"""On CPU the estimate lies within [0.9, 1.3] of the measured peak RSS growth, for tiny and bundled models, every
method and task: each run trains in its own process (tests/training/memory_calibration.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.training.tiny import build_tiny_causal_lm
from tests.training.memory_calibration import Case, measure_all, table

pytestmark = pytest.mark.slow

TINY_CASES = [
    Case("lm", "sft", "lora"),
    Case("lm", "text", "full"),
    Case("lm", "sft", "freeze"),
    Case("lm", "sft", "prompt_tuning"),
    Case("encoder", "classification", "full"),
    Case("encoder", "classification", "head"),
    Case("encoder", "token_classification", "lora"),
    Case("seq2seq", "seq2seq", "lora"),
    Case("seq2seq", "seq2seq", "full"),
    # 14M parameters: weights and activations, not the process, dominate.
    Case("lm14m", "text", "full", batch_size=2, max_length=128),
    Case("lm14m", "text", "lora", batch_size=4, max_length=256),
    Case("lm14m", "sft", "freeze", batch_size=4, max_length=256),
    # DPO: two sequences a pair; with LoRA the base is its own reference, with full weights a second copy is kept.
    Case("lm14m", "preference", "lora", batch_size=2, max_length=128),
    Case("lm14m", "preference", "full", batch_size=2, max_length=128),
]
BUNDLED_CASES = [
    Case("smollm2", "sft", "lora", batch_size=2, max_length=256),
    Case("smollm2", "text", "full", batch_size=1, max_length=128),
    Case("minilm", "classification", "lora", batch_size=16, max_length=128),
    Case("minilm", "classification", "full", batch_size=16, max_length=128),
]


def _check(results: list[dict]) -> None:
    print(table(results))
    outside = [r for r in results if not 0.9 <= r["ratio"] <= 1.3]
    assert not outside, table(outside)


def test_estimate_matches_measured_cpu_peak_on_tiny_models(
    tmp_path: Path, tiny_lm: Path, tiny_encoder: Path, tiny_seq2seq: Path
) -> None:
    lm14m = build_tiny_causal_lm(tmp_path / "lm14m", hidden_size=512, num_layers=6)
    models = {"lm": tiny_lm, "encoder": tiny_encoder, "seq2seq": tiny_seq2seq, "lm14m": lm14m}
    _check(measure_all(TINY_CASES, models, tmp_path / "runs"))


def test_estimate_matches_measured_cpu_peak_on_bundled_models(
    tmp_path: Path, smollm2_dir: Path, minilm_dir: Path
) -> None:
    _check(measure_all(BUNDLED_CASES, {"smollm2": smollm2_dir, "minilm": minilm_dir}, tmp_path / "runs"))
