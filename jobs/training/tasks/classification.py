"""Text classification: a head over an encoder picks one label per text."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jobs.training.tasks.base import Evaluation, TextHeadKind


class Classification(TextHeadKind):
    name = "classification"
    metric_names = {
        "accuracy": "Accuracy",
        "macro_f1": "Macro F1",
        "majority_baseline_accuracy": "Majority-class accuracy",
    }
    try_it = (
        'scores = model(**tokenizer("I really enjoyed it", return_tensors="pt")).logits.softmax(-1)[0]',
        "print({model.config.id2label[i]: round(p, 3) for i, p in enumerate(scores.tolist())})",
    )
    label_column = "label"
    training_imports = ("numpy", "sklearn.metrics")

    def label_values(self, batch: dict[str, list[Any]], label2id: dict[str, int]) -> list[Any]:
        return [label2id[str(label)] for label in batch["label"]]

    def metrics(self, evaluation: Evaluation) -> dict[str, float]:
        """Accuracy and macro-F1, with the accuracy of always answering the training set's majority class."""
        import numpy as np
        from sklearn.metrics import accuracy_score, f1_score

        assert evaluation.encoded is not None and evaluation.train_encoded is not None
        output = evaluation.trainer.predict(evaluation.encoded)
        predictions = np.argmax(output.predictions, axis=-1)
        references = output.label_ids
        majority = Counter(evaluation.train_encoded["labels"]).most_common(1)[0][0]
        return {
            "loss": round(float(output.metrics["test_loss"]), 6),
            "accuracy": round(float(accuracy_score(references, predictions)), 6),
            "macro_f1": round(float(f1_score(references, predictions, average="macro", zero_division=0)), 6),
            "majority_baseline_accuracy": round(float(np.mean(references == majority)), 6),
        }

    def answer(self, model: Any, tokenizer: Any, text: str, max_length: int) -> dict[str, Any]:
        """Every label with its probability, the likeliest first."""
        import torch

        inputs = self.prompt_inputs(tokenizer, text, max_length)
        with torch.no_grad():
            scores = torch.softmax(model(**inputs).logits[0], dim=-1).tolist()
        id2label = model.config.id2label or {}
        labels = [{"label": str(id2label.get(i, i)), "score": round(score, 4)} for i, score in enumerate(scores)]
        return {"labels": sorted(labels, key=lambda item: -item["score"])}


KIND = Classification()
