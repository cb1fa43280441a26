"""Multi-label classification on a tiny BERT: a head trained with binary cross-entropy learns which topics a text
mentions, and the saved model loads back as a multi-label classifier whose answer gives each label its own
probability."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs.training import tasks
from jobs.training.engine import train
from tests.training.conftest import make_spec
from webapp.catalog import loading, merging

# Words the tiny encoder's vocabulary holds whole, by the topic they mention.
TOPIC_WORDS = {"animal": ["cat", "dog", "bird"], "food": ["food", "apples"], "reading": ["book", "letter"]}
FILLERS = ["the", "my", "sees", "likes", "a", "friend"]
# Held-out texts say the same topics among other words.
OTHER_FILLERS = ["our", "team", "reads", "finds", "teacher"]


def topic_rows(count: int = 63, fillers: list[str] = FILLERS) -> list[dict[str, object]]:
    """Each text mentions one to three topics (every combination in turn); its labels are the topics it mentions."""
    rows = []
    topics = sorted(TOPIC_WORDS)
    for i in range(count):
        mask = i % 7 + 1
        labels = [topic for bit, topic in enumerate(topics) if mask >> bit & 1]
        words = [fillers[(i + k) % len(fillers)] for k in range(2)]
        for topic in labels:
            words.append(TOPIC_WORDS[topic][i % len(TOPIC_WORDS[topic])])
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


@pytest.mark.parametrize(("method", "learning_rate", "epochs"), [("lora", 5e-3, 8), ("head", 3e-2, 8)])
def test_multi_label_classifier_learns_the_topics_and_lowers_the_loss(
    tmp_path: Path, tiny_encoder: Path, method: str, learning_rate: float, epochs: int
) -> None:
    spec = make_spec(
        tmp_path, tiny_encoder, "multi_label_classification", method, topic_rows(),
        validation_rows=topic_rows(28, OTHER_FILLERS), epochs=epochs, learning_rate=learning_rate,
    )
    result = train(spec)
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert set(tuned) == {"loss", "micro_f1", "macro_f1", "subset_accuracy", "majority_baseline_micro_f1"}
    assert tuned["loss"] < base["loss"] and tuned["micro_f1"] > base["micro_f1"]
    if method == "lora":
        # The adapted encoder reads the topic words: better than always answering the commonest label set.
        assert tuned["micro_f1"] > tuned["majority_baseline_micro_f1"] and tuned["micro_f1"] > 0.8
        assert tuned["subset_accuracy"] > base["subset_accuracy"]
    config = json.loads((result.artifact_dir / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == ["animal", "food", "reading"]


def test_head_method_trains_one_output_per_label(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "multi_label_classification", "head", topic_rows(14), epochs=1))
    assert result.summary.trainable_parameters == 64 * 3 + 3  # 64 hidden -> 3 labels, and their biases


def test_the_saved_adapter_loads_as_multi_label_and_answers_label_by_label(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "multi_label_classification", "lora", topic_rows(14), epochs=1))
    assert loading.task_of_folder(result.artifact_dir) == "multi_label_classification"
    reloaded = loading.load_adapter_on_base(result.artifact_dir, tiny_encoder)
    assert reloaded.config.problem_type == "multi_label_classification"
    tokenizer = loading.load_tokenizer(result.artifact_dir)
    inputs = tokenizer(["the cat likes apples"], return_tensors="pt")
    with torch.no_grad():
        assert reloaded(**inputs).logits.shape == (1, 3)
        assert torch.allclose(reloaded(**inputs).logits, result.model(**inputs).logits, atol=1e-5)

    answer = tasks.kind("multi_label_classification").answer(reloaded, tokenizer, "the cat likes apples", 64)
    scores = [item["score"] for item in answer["labels"]]
    assert sorted(item["label"] for item in answer["labels"]) == ["animal", "food", "reading"]
    assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)
    # Each label is on at 0.5 by its own probability: any number of them, not one that wins.
    assert [item["label"] for item in answer["labels"] if item["score"] >= 0.5] == answer["predicted"]
    assert all(item["on"] == (item["score"] >= 0.5) for item in answer["labels"])


def test_a_full_multi_label_model_reads_as_multi_label_from_its_config(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "multi_label_classification", "full", topic_rows(14), epochs=1))
    assert loading.task_of_folder(result.artifact_dir) == "multi_label_classification"
    assert loading.load_plain(result.artifact_dir).config.problem_type == "multi_label_classification"


def test_the_merged_adapter_is_proven_and_stays_multi_label(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "multi_label_classification", "lora", topic_rows(14), epochs=1))
    evidence = merging.merge_and_prove(result.artifact_dir, tiny_encoder, tmp_path / "merged")
    assert evidence["passed"] and evidence["task"] == "multi_label_classification"
    assert loading.task_of_folder(tmp_path / "merged") == "multi_label_classification"
