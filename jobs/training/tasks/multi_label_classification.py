"""Multi-label text classification: a head over an encoder says, label by label, whether it applies to a text."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from jobs.training.tasks.base import Evaluation, TextHeadKind

if TYPE_CHECKING:
    import numpy as np

# A label is on when its sigmoid reaches this (a logit of 0): the threshold the metrics, the playground and the
# model card share.
THRESHOLD = 0.5


class MultiLabelClassification(TextHeadKind):
    name = "multi_label_classification"
    metric_names = {
        "micro_f1": "Micro F1",
        "macro_f1": "Macro F1",
        "subset_accuracy": "Exact-match accuracy (every label right)",
        "majority_baseline_micro_f1": "Micro F1 of always the commonest label set",
    }
    try_it = (
        'scores = model(**tokenizer("Great phone, fast delivery", return_tensors="pt")).logits.sigmoid()[0]',
        "print({model.config.id2label[i]: round(p, 3) for i, p in enumerate(scores.tolist()) if p >= 0.5})",
    )
    label_column = "labels"
    nested_labels = True
    training_imports = ("numpy", "sklearn.metrics")

    def label_values(self, batch: dict[str, list[Any]], label2id: dict[str, int]) -> list[Any]:
        """Multi-hot float vectors (binary cross-entropy reads floats): 1.0 for each label a row has."""
        rows = []
        for labels in batch["labels"]:
            vector = [0.0] * len(label2id)
            for label in labels:
                vector[label2id[str(label)]] = 1.0
            rows.append(vector)
        return rows

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """The loss, F1 over every label decision (micro) and per label (macro), the share of texts whose labels
        are all right, and the micro F1 of always answering the training set's commonest label set."""
        import numpy as np

        assert evaluation.encoded is not None and evaluation.train_encoded is not None
        output = evaluation.trainer.predict(evaluation.encoded)
        references = np.asarray(output.label_ids) >= 0.5
        predictions = np.asarray(output.predictions) >= 0  # sigmoid(logit) >= 0.5
        commonest = Counter(tuple(row) for row in evaluation.train_encoded["labels"]).most_common(1)[0][0]
        baseline = np.broadcast_to(np.asarray(commonest) >= 0.5, references.shape)
        return {"loss": round(float(output.metrics["test_loss"]), 6), **decision_metrics(predictions, references, baseline)}

    def answer(self, model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, Any]:
        """Every label with its own probability (a sigmoid each: they need not sum to 1), the likeliest first, and
        whether it is on (at THRESHOLD). `labels` is the classifier's answer form, so the page shows it alike."""
        import torch

        inputs = self.prompt_inputs(tokenizer, text, max_length)
        with torch.no_grad():
            scores = torch.sigmoid(model(**inputs).logits[0]).tolist()
        id2label = model.config.id2label or {}
        labels = [
            {"label": str(id2label.get(i, i)), "score": round(score, 4), "on": score >= THRESHOLD}
            for i, score in enumerate(scores)
        ]
        labels.sort(key=lambda item: -item["score"])
        return {"labels": labels, "predicted": [item["label"] for item in labels if item["on"]], "threshold": THRESHOLD}


def decision_metrics(predictions: np.ndarray, references: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Boolean (texts x labels) arrays in. Macro F1 counts a label that is neither present nor predicted as 1, as
    scikit-learn's zero_division=1 does, so a label missing from a small held-out set does not drag it down."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "micro_f1": round(float(f1_score(references, predictions, average="micro", zero_division=0)), 6),
        "macro_f1": round(float(f1_score(references, predictions, average="macro", zero_division=1)), 6),
        "subset_accuracy": round(float(accuracy_score(references, predictions)), 6),
        "majority_baseline_micro_f1": round(float(f1_score(references, baseline, average="micro", zero_division=0)), 6),
    }


KIND = MultiLabelClassification()
