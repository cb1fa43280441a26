"""Regression metrics on known numbers: the figures a person compares before and after training."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.training.tasks.regression import prediction_metrics


def test_errors_fit_and_rank_correlation_of_known_predictions():
    metrics = prediction_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, 3.0, 5.0]))
    # Residuals 0, 0, 0, -1; the scores' mean is 2.75, so the total sum of squares is 8.75.
    assert metrics == {"mse": 0.25, "mae": 0.25, "rmse": 0.5, "r2": round(1 - 1 / 8.75, 6), "spearman": 1.0}


def test_reversed_order_is_a_rank_correlation_of_minus_one_and_ties_share_a_rank():
    assert prediction_metrics(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))["spearman"] == -1.0
    # Predicted ranks 1.5, 1.5, 3 against 1, 2, 3: Pearson's r of the ranks is sqrt(3) / 2.
    tied = prediction_metrics(np.array([0.0, 0.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    assert tied["spearman"] == pytest.approx(np.sqrt(3) / 2, abs=1e-6)


def test_predicting_the_mean_scores_an_r2_of_zero():
    metrics = prediction_metrics(np.full(4, 2.5), np.array([1.0, 2.0, 3.0, 4.0]))
    assert metrics["r2"] == 0.0 and metrics["mse"] == 1.25 and metrics["mae"] == 1.0


def test_a_rank_correlation_with_constant_predictions_is_left_out_not_nan():
    metrics = prediction_metrics(np.full(3, 1.0), np.array([1.0, 2.0, 3.0]))
    assert "spearman" not in metrics
    assert all(np.isfinite(value) for value in metrics.values())
