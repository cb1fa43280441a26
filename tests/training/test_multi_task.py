"""Several datasets train one model: the mixture is capped relative to the smallest, metrics come per dataset."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from jobs.training.data import MIXTURE_CAP, mix_train_sets
from jobs.training.engine import train
from tests.training.conftest import chat_rows, classification_rows, instruction_rows, make_spec


def test_mixture_caps_each_dataset_at_a_multiple_of_the_smallest() -> None:
    small = Dataset.from_dict({"text": ["s"] * 10})
    large = Dataset.from_dict({"text": ["l"] * 1000})
    middle = Dataset.from_dict({"text": ["m"] * 25})
    mixed = mix_train_sets([small, large, middle], seed=1)
    counts = {key: mixed["text"].count(key) for key in "slm"}
    assert counts == {"s": 10, "l": 10 * MIXTURE_CAP, "m": 25}


def test_mixture_is_the_same_for_the_same_seed() -> None:
    first = Dataset.from_dict({"text": [str(i) for i in range(50)]})
    second = Dataset.from_dict({"text": ["x"] * 5})
    assert mix_train_sets([first, second], seed=3)["text"] == mix_train_sets([first, second], seed=3)["text"]


def test_multi_task_sft_reports_metrics_per_dataset(tmp_path: Path, tiny_lm: Path) -> None:
    spec = make_spec(tmp_path, tiny_lm, "sft", "lora", instruction_rows(32), extra_datasets={"chat": chat_rows(16)})
    result = train(spec)
    assert set(result.metrics["tuned"]) == {"main", "chat"}
    for name in ("main", "chat"):
        assert result.metrics["tuned"][name]["loss"] < result.metrics["base"][name]["loss"]


def test_multi_task_classification_uses_labels_from_every_dataset(tmp_path: Path, tiny_encoder: Path) -> None:
    other = [{"text": f"the weather is {w}", "label": "weather"} for w in ["sunny", "cold", "warm", "rain"] * 4]
    spec = make_spec(
        tmp_path, tiny_encoder, "classification", "full", classification_rows(32), extra_datasets={"w": other}
    )
    result = train(spec)
    assert set(result.metrics["tuned"]) == {"main", "w"}
    assert result.model.config.id2label == {0: "negative", 1: "positive", 2: "weather"}
