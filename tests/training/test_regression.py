"""Text regression on a tiny BERT: a one-output head trained with MSE learns a simple signal, and the saved model
loads back as a regression model that predicts what the trained one did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from jobs.training.engine import train
from tests.training.conftest import make_spec
from webapp.catalog import loading

_FILLERS = ["the", "cat", "sat", "on", "a", "red", "mat", "today", "with", "my", "friend"]


def score_rows(count: int = 64) -> list[dict[str, object]]:
    """The score is how many times `good` appears in the text (0 to 3), among a few filler words."""
    rows = []
    for i in range(count):
        goods = i % 4
        words = [_FILLERS[(i + k) % len(_FILLERS)] for k in range(4)]
        for position in range(goods):
            words.insert((i + 2 * position) % (len(words) + 1), "good")
        rows.append({"text": " ".join(words), "score": float(goods)})
    return rows


@pytest.mark.parametrize(("method", "learning_rate"), [("lora", 5e-3), ("head", 3e-2)])
def test_regression_learns_the_count_and_lowers_the_error(tmp_path: Path, tiny_encoder: Path, method, learning_rate) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "regression", method, score_rows(), epochs=8, learning_rate=learning_rate))
    base, tuned = result.metrics["base"]["main"], result.metrics["tuned"]["main"]
    assert {"loss", "mse", "mae", "rmse", "r2"} <= set(tuned)
    assert tuned["mse"] < base["mse"] and tuned["mae"] < base["mae"]
    assert tuned["r2"] > base["r2"]
    if method == "lora":
        # The adapted encoder learns to count. A head over a random frozen tiny encoder mostly learns the mean: its
        # features barely move with the count (r2 near 0), so only the lower error is asserted for it.
        assert tuned["r2"] > 0.3 and tuned["spearman"] > 0.5
    config = json.loads((result.artifact_dir / "config.json").read_text())
    assert (config["problem_type"], len(config["id2label"])) == ("regression", 1)


def test_head_method_trains_one_output(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "regression", "head", score_rows(16), epochs=1))
    assert result.summary.trainable_parameters == 64 + 1  # 64 hidden -> 1 score, and its bias


def test_the_saved_adapter_loads_as_regression_and_predicts_what_the_trained_model_did(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "regression", "lora", score_rows(16), epochs=1))
    assert loading.task_of_folder(result.artifact_dir) == "regression"
    reloaded = loading.load_adapter_on_base(result.artifact_dir, tiny_encoder)
    inputs = loading.load_tokenizer(result.artifact_dir)(["good good the cat"], return_tensors="pt")
    with torch.no_grad():
        assert reloaded(**inputs).logits.shape == (1, 1)
        assert torch.allclose(reloaded(**inputs).logits, result.model(**inputs).logits, atol=1e-5)


def test_a_full_regression_model_reads_as_regression_from_its_config(tmp_path: Path, tiny_encoder: Path) -> None:
    result = train(make_spec(tmp_path, tiny_encoder, "regression", "full", score_rows(16), epochs=1))
    assert loading.task_of_folder(result.artifact_dir) == "regression"
    assert result.metrics["tuned"]["main"]["mse"] >= 0
