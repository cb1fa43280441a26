"""On the bundled SmolLM2: an f16 GGUF passes its proof, still knows Paris, and gets a verified ChatML Modelfile."""

from __future__ import annotations

import pytest

from tests.training.bundled import smollm2_dir  # noqa: F401 (session fixture)
from webapp.catalog import gguf_export

pytestmark = pytest.mark.slow


def test_smollm2_f16_gguf_is_proven_and_still_knows_paris(smollm2_dir, tmp_path):  # noqa: F811
    evidence = gguf_export.export_and_prove(smollm2_dir, tmp_path, "f16", "SmolLM2-135M-Instruct")
    assert evidence["passed"], evidence
    assert evidence["max_abs_logit_diff"] <= gguf_export.LOGIT_BOUNDS["f16"]
    capital = next(row for row in evidence["prompts"] if "France" in row["prompt"])
    assert "Paris" in capital["gguf_output"] and capital["gguf_output"] == capital["source_output"]
    assert 250_000_000 < evidence["file"]["size_bytes"] < 300_000_000  # 135M parameters at 2 bytes, norms at 4
    assert evidence["modelfile"]["template"] == "chatml" and evidence["modelfile"]["template_verified"]
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM' in (tmp_path / "Modelfile").read_text()
