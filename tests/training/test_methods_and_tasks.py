"""Every method that makes sense for a task trains on a tiny model, improves its validation loss and saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jobs.training.engine import train
from tests.training.conftest import (
    chat_rows,
    classification_rows,
    instruction_rows,
    make_spec,
    seq2seq_rows,
    text_rows,
    token_rows,
)

GENERATIVE = [
    ("sft", "full", instruction_rows),
    ("sft", "freeze", instruction_rows),
    ("sft", "lora", instruction_rows),
    ("sft", "prompt_tuning", instruction_rows),
    ("sft", "lora", chat_rows),
    ("text", "full", text_rows),
    ("text", "lora", text_rows),
    ("text", "prompt_tuning", text_rows),
]

ENCODER = [
    ("classification", "full"),
    ("classification", "freeze"),
    ("classification", "lora"),
    ("classification", "head"),
    ("token_classification", "full"),
    ("token_classification", "lora"),
    ("token_classification", "head"),
]

SEQ2SEQ = ["full", "freeze", "lora"]


def _assert_artifact(result, adapter: bool) -> None:
    names = {p.name for p in result.artifact_dir.iterdir()}
    assert {"README.md", "metrics.json", "training_args.json", "checksums.sha256", "tokenizer.json"} <= names
    if adapter:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= names
        assert "model.safetensors" not in names
        saved_whole = json.loads((result.artifact_dir / "adapter_config.json").read_text()).get("modules_to_save") or []
        assert len(saved_whole) == len(set(saved_whole)), f"modules_to_save lists a module twice: {saved_whole}"
    else:
        assert {"config.json", "model.safetensors"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]


@pytest.mark.parametrize(("task", "method", "rows"), GENERATIVE)
def test_generative_method_lowers_validation_loss(tmp_path: Path, tiny_lm: Path, task, method, rows) -> None:
    result = train(make_spec(tmp_path, tiny_lm, task, method, rows(), epochs=3))
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert tuned["loss"] < base["loss"]
    assert tuned["perplexity"] < base["perplexity"]
    assert result.summary.global_step > 0
    assert 0 < result.summary.trainable_parameters <= result.summary.total_parameters
    _assert_artifact(result, adapter=method in ("lora", "prompt_tuning"))


@pytest.mark.parametrize(("task", "method"), ENCODER)
def test_encoder_method_learns_the_labels(tmp_path: Path, tiny_encoder: Path, task, method) -> None:
    rows = classification_rows(64) if task == "classification" else token_rows(32)
    # A random tiny BERT needs more steps and a larger rate than a pretrained one; methods that train whole
    # blocks (full, freeze) are noisy at 5e-3 and could end at chance (loss ln 2) on some runs.
    learning_rate = 1e-3 if method in ("full", "freeze") else 5e-3
    result = train(make_spec(tmp_path, tiny_encoder, task, method, rows, epochs=8, learning_rate=learning_rate))
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert tuned["loss"] < base["loss"]
    if task == "classification":
        assert {"accuracy", "macro_f1", "majority_baseline_accuracy"} <= set(tuned)
    else:
        assert {"f1", "tag_accuracy"} <= set(tuned)
    _assert_artifact(result, adapter=method == "lora")


@pytest.mark.parametrize("method", SEQ2SEQ)
def test_seq2seq_method_lowers_loss_and_reports_rouge(tmp_path: Path, tiny_seq2seq: Path, method) -> None:
    result = train(make_spec(tmp_path, tiny_seq2seq, "seq2seq", method, seq2seq_rows(), epochs=3))
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert tuned["loss"] < base["loss"]
    assert {"rouge1", "rouge2", "rougeL"} <= set(tuned)
    _assert_artifact(result, adapter=method == "lora")


def test_decoder_model_trains_as_a_classifier_with_lora(tmp_path: Path, tiny_lm: Path) -> None:
    result = train(make_spec(tmp_path, tiny_lm, "classification", "lora", classification_rows(48), epochs=3))
    assert result.metrics["tuned"]["main"]["loss"] < result.metrics["base"]["main"]["loss"]


def test_freeze_trains_only_the_last_blocks(tmp_path: Path, tiny_lm: Path) -> None:
    one = train(
        make_spec(tmp_path / "one", tiny_lm, "sft", "freeze", instruction_rows(16), epochs=1, trainable_layers=1)
    )
    two = train(
        make_spec(tmp_path / "two", tiny_lm, "sft", "freeze", instruction_rows(16), epochs=1, trainable_layers=2)
    )
    assert 0 < one.summary.trainable_parameters < two.summary.trainable_parameters < two.summary.total_parameters


def test_head_method_trains_only_the_head(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "classification", "head", classification_rows(16), epochs=1))
    # 2 labels x 64 hidden + 2 biases.
    assert result.summary.trainable_parameters == 130


def test_early_stopping_keeps_the_best_checkpoint(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "sft", "lora", instruction_rows(), epochs=4, save_steps=4, early_stopping_patience=1
    )
    result = train(spec)
    assert result.artifact_dir is not None
    evaluations = [e for e in result.log_history if "eval_d0_loss" in e]
    assert evaluations, "evaluations every save_steps are needed for early stopping"
    assert result.metrics["tuned"]["main"]["loss"] <= min(e["eval_d0_loss"] for e in evaluations) + 1e-4


def test_early_stopping_evaluates_at_least_once_an_epoch_on_small_datasets(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(
        tmp_path, tiny_lm, "sft", "lora", instruction_rows(24), epochs=3, save_steps=500, early_stopping_patience=2
    )
    result = train(spec)
    evaluations = [e for e in result.log_history if "eval_d0_loss" in e]
    assert len(evaluations) >= 3
