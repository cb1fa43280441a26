"""Classifiers share one head class: the problem_type transformers writes into config.json tells their tasks apart,
for full models and for the config.json a classifier adapter saves beside its weights."""

from __future__ import annotations

import pytest

from webapp.catalog import loading

HEAD = ["BertForSequenceClassification"]


@pytest.mark.parametrize(
    ("problem_type", "task"),
    [
        ("multi_label_classification", "multi_label_classification"),
        ("single_label_classification", "classification"),
        (None, "classification"),
        ("regression", "regression"),
    ],
)
def test_the_task_of_a_sequence_classifier_follows_its_problem_type(problem_type, task):
    assert loading.task_of_config({"architectures": HEAD, "problem_type": problem_type}) == task
    assert loading.task_of_adapter_config({"task_type": "SEQ_CLS"}, {"architectures": HEAD, "problem_type": problem_type}) == task


def test_an_adapter_without_its_config_reads_as_single_label_classification():
    assert loading.task_of_adapter_config({"task_type": "SEQ_CLS"}) == "classification"
