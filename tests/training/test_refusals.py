"""Combinations that cannot work are refused before any training, with a sentence a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.training import SpecError
from jobs.training.engine import train
from tests.training.conftest import classification_rows, instruction_rows, make_spec, seq2seq_rows


def _refusal(spec) -> str:
    with pytest.raises(SpecError) as caught:
        train(spec)
    assert not spec.output_dir.exists()
    return " ".join(caught.value.messages)


def test_prompt_tuning_on_an_encoder_is_refused(tmp_path: Path, tiny_encoder: Path) -> None:
    # resolve_hyperparameters already refuses the task x method pair, the engine refuses it again for direct callers.
    spec = make_spec(tmp_path, tiny_encoder, "classification", "lora", classification_rows(8))
    spec.method = "prompt_tuning"
    assert "Method 'prompt_tuning' does not apply to task 'classification'" in _refusal(spec)


def test_qlora_on_a_cpu_worker_is_refused(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "qlora", instruction_rows(8))
    assert "QLoRA needs a CUDA GPU worker" in _refusal(spec)


def test_head_method_on_sft_is_refused(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(8))
    spec.method = "head"
    assert "Method 'head' does not apply to task 'sft'" in _refusal(spec)


def test_sft_on_an_encoder_is_refused(tmp_path: Path, tiny_encoder: Path) -> None:
    spec = make_spec(tmp_path, tiny_encoder, "sft", "lora", instruction_rows(8))
    assert "needs a causal language model" in _refusal(spec)


def test_seq2seq_on_a_decoder_is_refused(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "seq2seq", "lora", seq2seq_rows(8))
    assert "needs an encoder-decoder model" in _refusal(spec)


def test_dataset_of_the_wrong_shape_is_refused(tmp_path: Path, tiny_encoder: Path) -> None:
    spec = make_spec(tmp_path, tiny_encoder, "classification", "lora", instruction_rows(8))
    assert "task 'classification' needs text+label" in _refusal(spec)


def test_freeze_with_more_layers_than_the_model_has_is_refused(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "freeze", instruction_rows(8), trainable_layers=5)
    assert "only 2 layers" in _refusal(spec)
