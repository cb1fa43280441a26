"""Multi-label metrics on known decisions, and rows encoded as the multi-hot float vectors binary cross-entropy reads."""

from __future__ import annotations

import numpy as np

from jobs.training import registry, tasks
from jobs.training.tasks.multi_label_classification import decision_metrics

REFERENCES = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=bool)


def test_micro_macro_and_exact_match_of_known_decisions():
    predictions = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=bool)
    metrics = decision_metrics(predictions, REFERENCES, np.zeros_like(REFERENCES))
    # 5 of 6 labels found, 1 wrong one: micro F1 = 2*5 / (2*5 + 1 + 1). Per label: 1, 2/3, 4/5.
    assert metrics["micro_f1"] == round(10 / 12, 6)
    assert metrics["macro_f1"] == round((1 + 2 / 3 + 4 / 5) / 3, 6)
    assert metrics["subset_accuracy"] == 0.5  # rows 1 and 4 have every label right
    assert metrics["majority_baseline_micro_f1"] == 0.0  # answering no label finds none


def test_a_label_absent_from_both_sides_does_not_lower_macro_f1():
    references = np.array([[1, 0], [1, 0]], dtype=bool)
    metrics = decision_metrics(references.copy(), references, references)
    assert metrics == {"micro_f1": 1.0, "macro_f1": 1.0, "subset_accuracy": 1.0, "majority_baseline_micro_f1": 1.0}


def test_rows_become_multi_hot_float_labels_over_the_vocabulary():
    kind = tasks.kind("multi_label_classification")
    label2id = {"animal": 0, "food": 1, "reading": 2}
    assert kind.label_values({"labels": [["food"], ["reading", "animal"]]}, label2id) == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]


def test_the_head_takes_its_loss_from_the_task_and_its_size_from_the_data():
    assert registry.task("multi_label_classification").head_config == {"problem_type": "multi_label_classification"}
    assert registry.task("regression").head_config == {"problem_type": "regression", "num_labels": 1}
    assert registry.task("classification").head_config == {}
