"""Packing turns variable-length SFT rows into sequences that are nearly all real tokens."""

from __future__ import annotations

import random
from pathlib import Path

from jobs.training.engine import packing_strategy, train
from tests.training.conftest import make_spec


def _variable_rows(count: int) -> list[dict[str, str]]:
    generator = random.Random(0)
    words = ["cat", "dog", "red", "blue", "sun", "moon", "tree", "book"]
    return [
        {
            "instruction": "Write some words.",
            "input": "",
            "output": " ".join(generator.choice(words) for _ in range(generator.choice([1, 2, 3, 40]))),
        }
        for _ in range(count)
    ]


def test_packed_batches_are_at_least_95_percent_real_tokens(tmp_path: Path, tiny_lm: Path) -> None:
    rows = _variable_rows(64)
    packed = train(make_spec(tmp_path / "packed", tiny_lm, "sft", "lora", rows, epochs=1, max_length=128, packing=True))
    padded = train(
        make_spec(tmp_path / "padded", tiny_lm, "sft", "lora", rows, epochs=1, max_length=128, packing=False)
    )
    assert packed.summary.real_tokens / packed.summary.tokens_seen >= 0.95
    assert padded.summary.real_tokens / padded.summary.tokens_seen < 0.8
    assert packed.summary.global_step < padded.summary.global_step


def test_padding_free_packing_only_with_a_variable_length_attention_kernel() -> None:
    assert packing_strategy("sft", "flash_attention_2") == "bfd"
    assert packing_strategy("text", "flash_attention_2") == "bfd_split"
    assert packing_strategy("sft", "sdpa") == "wrapped"
