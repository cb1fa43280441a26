"""The memory estimate adds up the way training spends memory, and matches a measured CPU run within 2x."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from transformers import AutoConfig

from jobs.training import estimate_memory
from jobs.training.tiny import build_tiny_causal_lm
from tests.training.conftest import make_spec
from tests.training.training_job import spec_to_json

PROBE = Path(__file__).with_name("memory_probe.py")
SMOLLM2 = dict(parameter_count=134_515_008, hidden_size=576, num_layers=30, num_heads=9, vocab_size=49152)


def test_full_fp32_adamw_keeps_16_bytes_per_parameter_before_activations() -> None:
    estimate = estimate_memory(task="sft", method="full", precision="fp32", batch_size=8, max_length=512, **SMOLLM2)
    states = estimate.weights + estimate.gradients + estimate.optimizer_state
    assert states == 16 * SMOLLM2["parameter_count"]
    assert estimate.total > 4 * estimate.weights  # activations come on top of the 4x


def test_lora_and_qlora_need_far_less_than_full_fine_tuning() -> None:
    common = dict(task="sft", batch_size=4, max_length=512, gradient_checkpointing=True, **SMOLLM2)
    full = estimate_memory(method="full", precision="fp32", **common)
    lora = estimate_memory(method="lora", precision="bf16", **common)
    qlora = estimate_memory(method="qlora", precision="bf16", **common)
    assert lora.gradients + lora.optimizer_state < 0.02 * (full.gradients + full.optimizer_state)
    assert lora.total < 0.5 * full.total
    assert qlora.weights < 0.35 * lora.weights
    assert qlora.total < lora.total


def test_gradient_checkpointing_and_head_only_shrink_activations() -> None:
    common = dict(
        task="classification",
        precision="fp32",
        batch_size=16,
        max_length=128,
        parameter_count=22_700_000,
        hidden_size=384,
        num_layers=6,
        num_heads=12,
        vocab_size=30522,
    )
    plain = estimate_memory(method="full", **common)
    checkpointed = estimate_memory(method="full", gradient_checkpointing=True, **common)
    head = estimate_memory(method="head", **common)
    assert checkpointed.activations < plain.activations / 3
    assert head.activations < plain.activations / 3
    assert head.optimizer_state < 10_000


@pytest.mark.parametrize(("method", "batch_size"), [("full", 1), ("lora", 4)])
def test_estimate_is_within_2x_of_the_measured_peak_rss_growth(tmp_path: Path, method: str, batch_size: int) -> None:
    # 14M parameters: big enough for the weights and activations to dominate the process's own allocations.
    base = build_tiny_causal_lm(tmp_path / "model", hidden_size=512, num_layers=6)
    rows = [{"text": "the cat likes the dog and the moon. " * 40} for _ in range(12)]
    spec = make_spec(
        tmp_path, base, "text", method, rows, epochs=1, batch_size=batch_size, max_length=128, packing=False
    )
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec_to_json(spec))
    completed = subprocess.run(
        [sys.executable, str(PROBE), str(spec_file)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    measured = json.loads(completed.stdout.strip().splitlines()[-1])["increase"]

    config = AutoConfig.from_pretrained(base)
    with safe_open(base / "model.safetensors", "pt") as weights:
        parameters = sum(math.prod(weights.get_slice(key).get_shape()) for key in weights.keys())
    estimate = estimate_memory(
        parameters,
        method,
        "text",
        "fp32",
        batch_size,
        128,
        config.hidden_size,
        config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        vocab_size=config.vocab_size,
        fused_attention=True,
    )
    assert 0.5 <= measured / estimate.total <= 2.0, (measured, estimate.to_dict())
