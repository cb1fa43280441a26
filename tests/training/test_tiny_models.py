"""The tiny offline models load with plain transformers and stay tiny."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

from jobs.training.tiny import build_tiny_causal_lm, build_tiny_encoder, build_tiny_seq2seq


@pytest.mark.parametrize(
    ("build", "model_class"),
    [
        (build_tiny_causal_lm, AutoModelForCausalLM),
        (build_tiny_encoder, AutoModelForSequenceClassification),
        (build_tiny_seq2seq, AutoModelForSeq2SeqLM),
    ],
)
def test_tiny_model_builds_fast_and_loads_with_auto_classes(tmp_path: Path, build, model_class) -> None:
    started = time.perf_counter()
    path = build(tmp_path / "model")
    assert time.perf_counter() - started < 3
    assert (path / "model.safetensors").exists()
    assert not list(path.glob("*.bin"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = model_class.from_pretrained(path)
    assert sum(p.numel() for p in model.parameters()) < 1_000_000
    assert 500 <= len(tokenizer) <= 1000
    assert tokenizer.pad_token_id is not None
    batch = tokenizer(["the cat likes good food.", "a dog"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2


def test_tiny_causal_lm_chat_template_marks_assistant_tokens(tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(build_tiny_causal_lm(tmp_path / "lm"))
    messages = [{"role": "user", "content": "hi there"}, {"role": "assistant", "content": "hello"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    encoded = tokenizer.apply_chat_template(messages, return_dict=True, return_assistant_tokens_mask=True)
    masked = [t for t, m in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(masked) == "hello<|im_end|>"


def test_tiny_models_are_identical_across_builds(tmp_path: Path) -> None:
    first = AutoModelForCausalLM.from_pretrained(build_tiny_causal_lm(tmp_path / "a"))
    second = AutoModelForCausalLM.from_pretrained(build_tiny_causal_lm(tmp_path / "b"))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
