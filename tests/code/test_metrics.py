"""Shared metrics: the calibrated-score estimate of ROC AUC used while labels are pending,
regression metrics by hand, and each metric's task and direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from precast.metrics import (
    expected_roc_auc,
    mean_gap,
    meets_floor,
    not_worse,
    regression_metrics,
    task_metrics,
    task_of,
)


@pytest.mark.parametrize("spread", [0.5, 1.5, 3.0])
def test_expected_auc_matches_the_realised_auc_of_calibrated_scores(spread: float) -> None:
    rng = np.random.default_rng(7)
    p = 1 / (1 + np.exp(-(spread * rng.normal(size=300_000) - 2)))
    labels = rng.random(len(p)) < p  # the scores are calibrated by construction
    assert expected_roc_auc(p) == pytest.approx(roc_auc_score(labels, p), abs=5e-3)


def test_expected_auc_by_hand_with_ties() -> None:
    p = np.array([0.2, 0.2, 0.8])
    # pairs (i above j) weighted p_i (1 - p_j); ties count half; no self-pairs
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    num = sum(p[i] * (1 - p[j]) * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
              for i, j in pairs)
    den = sum(p[i] * (1 - p[j]) for i, j in pairs)
    assert expected_roc_auc(p) == pytest.approx(num / den, abs=1e-12)
    assert expected_roc_auc(np.full(5, 0.3)) == pytest.approx(0.5)


def test_expected_auc_is_nan_without_pairs() -> None:
    assert math.isnan(expected_roc_auc(np.array([0.4])))
    assert math.isnan(expected_roc_auc(np.array([0.0, 0.0])))


def test_regression_metrics_by_hand() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 2.0, 2.0, 6.0])  # errors 1, 0, -1, 2; label mean 2.5, spread 5
    assert regression_metrics(y, p) == {
        "rmse": pytest.approx(math.sqrt(6 / 4)), "mae": 1.0, "bias": 0.5,
        "r2": pytest.approx(1 - 6 / 5), "mean_label": 2.5, "mean_score": 3.0, "rows": 4.0}
    assert task_metrics("regression", y, p) == regression_metrics(y, p)
    assert mean_gap(regression_metrics(y, p)) == 0.5
    assert math.isnan(regression_metrics(np.full(3, 7.0), np.array([6.0, 7.0, 8.0]))["r2"])


def test_each_metric_knows_its_task_and_direction() -> None:
    assert task_of("rmse") == task_of("mae") == task_of("r2") == "regression"
    assert task_of("roc_auc") == task_of("brier") == "binary"
    with pytest.raises(KeyError, match="unknown metric 'accuracy'"):
        task_of("accuracy")
    # rmse: lower is better, so "not worse" allows the champion's value plus the tolerance
    assert not_worse("rmse", 10.4, 10.0, 0.5) and not not_worse("rmse", 10.6, 10.0, 0.5)
    assert not_worse("r2", 0.75, 0.8, 0.1) and not not_worse("r2", 0.65, 0.8, 0.1)
    assert meets_floor("rmse", 9.0, 10.0) and not meets_floor("rmse", 11.0, 10.0)


def test_binary_metrics_keep_their_names() -> None:
    values = task_metrics("binary", np.array([0.0, 1.0, 1.0, 0.0]),
                             np.array([0.2, 0.7, 0.6, 0.5]))
    assert set(values) == {"roc_auc", "pr_auc", "log_loss", "brier", "calibration_error",
                           "label_rate", "mean_score", "rows"}
    assert values["roc_auc"] == 1.0 and mean_gap(values) == pytest.approx(0.5 - 0.5)
