"""Text regression: a one-output head learns a score per text (MSE, in the scores' own scale)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from jobs.training.tasks.base import Evaluation, TextHeadKind

if TYPE_CHECKING:
    import numpy as np


class Regression(TextHeadKind):
    name = "regression"
    metric_names = {
        "mse": "Mean squared error",
        "mae": "Mean absolute error",
        "rmse": "Root mean squared error",
        "r2": "R² (1 is perfect, 0 no better than the mean)",
        "spearman": "Spearman rank correlation",
    }
    training_imports = ("numpy", "scipy.stats", "sklearn.metrics")
    try_it = (
        'score = model(**tokenizer("I really enjoyed it", return_tensors="pt")).logits[0, 0].item()',
        "print(round(score, 3))",
    )

    def label_values(self, batch: dict[str, list[Any]], label2id: dict[str, int]) -> list[Any]:
        """The scores as float labels, as they were uploaded."""
        return [float(score) for score in batch["score"]]

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """The MSE loss the head trains on, and the errors, fit and rank correlation of its predicted scores."""
        import numpy as np

        output = evaluation.trainer.predict(evaluation.encoded)
        predictions = np.asarray(output.predictions, dtype=np.float64).reshape(-1)
        references = np.asarray(output.label_ids, dtype=np.float64).reshape(-1)
        return {"loss": round(float(output.metrics["test_loss"]), 6), **prediction_metrics(predictions, references)}

    def answer(self, model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, Any]:
        """The head's one output, in the scale of the scores it was trained on."""
        import torch

        with torch.no_grad():
            score = float(model(**self.prompt_inputs(tokenizer, text, max_length)).logits[0, 0])
        return {"score": round(score, 4)}


def prediction_metrics(predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """mse, mae, rmse; r2 (1 - squared error / the scores' variance: 0 is no better than their mean); spearman (the
    rank correlation: does the model order the texts right, whatever its scale). Spearman is left out when either
    side is constant: it is undefined there, and NaN would not survive the JSON the metrics are stored in."""
    import numpy as np
    from scipy.stats import spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    mse = float(mean_squared_error(references, predictions))
    metrics = {
        "mse": round(mse, 6),
        "mae": round(float(mean_absolute_error(references, predictions)), 6),
        "rmse": round(math.sqrt(mse), 6),
        "r2": round(float(r2_score(references, predictions)), 6),
    }
    if np.ptp(predictions) > 0 and np.ptp(references) > 0:
        metrics["spearman"] = round(float(spearmanr(predictions, references).statistic), 6)
    return metrics


KIND = Regression()
