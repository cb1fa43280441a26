"""Packing turns variable-length SFT rows into sequences that are nearly all real tokens."""

from __future__ import annotations

import random
from pathlib import Path

from jobs.training.engine import train
from jobs.training.execution import Capabilities, plan_execution
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


def test_packing_is_exact_padding_free_on_cuda_and_wrapped_on_cpu() -> None:
    gpu = Capabilities(cuda=True, bf16=True)
    flash = Capabilities(cuda=True, bf16=True, flash_attn=True)
    assert plan_execution("sft", "lora", "llama", "cuda", packing=True, capabilities=flash).packing_strategy == "bfd"
    assert plan_execution("sft", "lora", "llama", "cuda", packing=True, capabilities=flash).attention == (
        "flash_attention_2"
    )
    # Without flash-attn, SDPA gets transformers' block-diagonal mask from the packed position_ids: still exact.
    assert plan_execution("sft", "lora", "llama", "cuda", packing=True, capabilities=gpu).packing_strategy == "bfd"
    assert plan_execution("text", "full", "llama", "cuda", packing=True, capabilities=gpu).packing_strategy == (
        "bfd_split"
    )
    assert plan_execution("sft", "lora", "llama", "cpu", packing=True).packing_strategy == "wrapped"
    assert plan_execution("sft", "lora", "llama", "cpu", packing=False).packing_strategy is None
    # Soft prompts go before each sequence, so prompt tuning never packs.
    assert plan_execution("sft", "prompt_tuning", "llama", "cuda", packing=True, capabilities=gpu).packing_strategy is None
