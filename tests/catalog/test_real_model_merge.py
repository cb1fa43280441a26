"""On the bundled SmolLM2: a LoRA adapter merges with proof, and the merged model still answers sensibly."""

from __future__ import annotations

import pytest

from jobs.merging import merge_adapter
from tests.catalog.conftest import make_lora_adapter
from webapp.catalog import importing, registering

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_smollm2_lora_merge_is_proven_and_still_knows_paris(alice, tmp_path):
    smol = next(m for m in importing.import_bundled_models() if m.name == "SmolLM2-135M-Instruct")
    folder = make_lora_adapter(smol.local_dir(), tmp_path / "smol-lora", task="sft", seed=3, lora_b_scale=0.01)
    adapter = registering.register_derived_model(folder, name="smol-lora", kind="adapter", parent=smol, owner=alice, metrics={}, task="sft")
    assert adapter.parameter_count == 30 * (4 * (576 + 576) + 4 * (576 + 192))  # r=4 on q_proj and v_proj, 30 layers
    merged = merge_adapter(adapter, alice)
    proof = merged.metrics["merge_proof"]
    assert proof["passed"], proof
    capital = next(row for row in proof["prompts"] if "France" in row["prompt"])
    assert "Paris" in capital["merged_output"] and capital["merged_output"] == capital["adapter_output"]
    assert merged.parameter_count == smol.parameter_count
