"""The memory estimate at submit sizes a classifier's head as the run will: one output per distinct label over all
the job's datasets (the profile's label names, or its count where it lists only the commonest), fixed where the task
fixes it (regression: one score)."""

from __future__ import annotations

from types import SimpleNamespace

from jobs.services import head_size


def _dataset(profile: dict) -> SimpleNamespace:
    return SimpleNamespace(profile=profile)


def test_labels_of_every_dataset_count_once() -> None:
    first = _dataset({"labels": {"classes": 3, "counts": {"a": 5, "b": 4, "c": 1}, "imbalance_ratio": 5.0}})
    second = _dataset({"labels": {"classes": 2, "counts": {"c": 3, "d": 3}, "imbalance_ratio": 1.0}})
    assert head_size("classification", [first, second]) == 4
    assert head_size("multi_label_classification", [_dataset({"labels": {"classes": 7, "counts": {"x": 2}, "per_row": {}}})]) == 7


def test_a_profile_that_lists_only_its_commonest_labels_counts_them_all() -> None:
    counts = {f"label{i}": 1 for i in range(50)}
    assert head_size("classification", [_dataset({"labels": {"classes": 120, "counts": counts}})]) == 120


def test_tags_size_a_tagger_and_regression_has_one_output() -> None:
    assert head_size("token_classification", [_dataset({"tags": {"O": 40, "B-PER": 3, "I-PER": 2}})]) == 3
    assert head_size("regression", [_dataset({"scores": {"min": 0, "max": 1}})]) == 1


def test_a_dataset_without_a_profile_falls_back_to_two_outputs() -> None:
    assert head_size("classification", [_dataset({})]) == 2
    assert head_size("classification", [SimpleNamespace(profile=None)]) == 2
