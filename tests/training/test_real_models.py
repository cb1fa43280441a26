"""The bundled real models learn with the presets' settings: MiniLM LoRA beats the majority class on a written
sentiment set; SmolLM2 LoRA SFT lowers validation loss on a written instruction set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from jobs.training import DatasetFiles, TrainingSpec, resolve_hyperparameters
from jobs.training.engine import train
from tests.training.conftest import DATA_DIR, write_parquet

pytestmark = pytest.mark.slow

def _spec(
    tmp_path: Path, base: Path, task: str, rows: list[dict], name: str, parameters: int, **overrides
) -> TrainingSpec:
    return TrainingSpec(
        base_model_dir=base,
        task=task,
        method="lora",
        datasets=[DatasetFiles(name, write_parquet(rows, tmp_path / f"{name}.parquet"))],
        hyperparameters=resolve_hyperparameters(task, "lora", parameters, overrides),
        output_dir=tmp_path / "artifact",
        checkpoint_dir=tmp_path / "checkpoints",
        device="cpu",
    )


def test_minilm_lora_beats_the_majority_class_on_sentiment(tmp_path: Path, minilm_dir: Path) -> None:
    with (DATA_DIR / "sentiment.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    # The quick preset's epochs and learning rate, on the real 22M-parameter encoder.
    spec = _spec(
        tmp_path, minilm_dir, "classification", rows, "sentiment", 22_700_000, preset="quick", eval_fraction=0.2
    )
    result = train(spec)
    tuned = result.metrics["tuned"]["sentiment"]
    assert tuned["accuracy"] >= tuned["majority_baseline_accuracy"] + 0.2, tuned
    assert tuned["macro_f1"] >= 0.7, tuned
    assert result.artifact_dir is not None


def test_smollm2_lora_sft_lowers_validation_loss(tmp_path: Path, smollm2_dir: Path) -> None:
    rows = [json.loads(line) for line in (DATA_DIR / "antonyms.jsonl").read_text().splitlines()]
    spec = _spec(
        tmp_path,
        smollm2_dir,
        "sft",
        rows,
        "antonyms",
        134_515_008,
        preset="quick",
        max_length=128,
        eval_fraction=0.2,
        # 40 short rows pack into 2 optimizer steps an epoch: 2 epochs and a 5x LoRA rate keep it under a minute
        # on 2 CPU cores while moving the loss clearly (measured: 0.732 -> 0.536).
        learning_rate=1e-3,
        lora_r=8,
        epochs=2,
    )
    result = train(spec)
    base, tuned = result.metrics["base"]["antonyms"], result.metrics["tuned"]["antonyms"]
    assert tuned["loss"] < base["loss"] * 0.85, (base, tuned)
    assert (result.artifact_dir / "adapter_model.safetensors").exists()
