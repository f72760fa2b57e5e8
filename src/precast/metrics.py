"""Metrics per task, shared by train, the champion gate, monitoring and the config checks.

The one place that knows each task's metrics and which way is better: `TASK_METRICS`
(`binary`: the label is 0/1 and the score a probability; `regression`: the label and the
score are real numbers, in the label's units). Every task's metrics also carry `mean_score`
and the label's mean (`label_rate` for binary, `mean_label` for regression), so the gap
between mean prediction and mean label reads the same for both (:func:`mean_gap`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

Task = Literal["binary", "regression"]

# Each task's comparable metrics: name -> True when higher is better.
TASK_METRICS: dict[str, dict[str, bool]] = {
    "binary": {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False,
               "calibration_error": False},
    "regression": {"rmse": False, "mae": False, "r2": True},
}
HIGHER_IS_BETTER = {name: higher for metrics in TASK_METRICS.values()
                    for name, higher in metrics.items()}
# The key of each task's metrics that holds the label's mean, and how reports name it.
LABEL_MEAN = {"binary": "label_rate", "regression": "mean_label"}
LABEL_MEAN_WORDS = {"binary": "label rate", "regression": "mean label"}
# What reports, model cards and monitoring show of each task's metrics, in this order.
SUMMARY = {"binary": ("roc_auc", "pr_auc", "log_loss", "brier", "calibration_error",
                      "mean_score", "label_rate"),
           "regression": ("rmse", "mae", "r2", "bias", "mean_score", "mean_label")}


def task_of(metric: str) -> Task:
    """The task whose metric `metric` is (KeyError for an unknown name)."""
    for task, metrics in TASK_METRICS.items():
        if metric in metrics:
            return "binary" if task == "binary" else "regression"
    raise KeyError(f"unknown metric {metric!r}; known: {', '.join(HIGHER_IS_BETTER)}")


def calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.mean() * abs(float(p[mask].mean()) - float(y[mask].mean()))
    return total


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss, Brier, calibration error, label rate and mean score."""
    from sklearn import metrics as skm

    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    both = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(skm.average_precision_score(y, p)) if both else float("nan"),
        "log_loss": float(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(skm.brier_score_loss(y, p)),
        "calibration_error": calibration_error(y, p),
        "label_rate": float(y.mean()),
        "mean_score": float(p.mean()),
        "rows": float(len(y)),
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, bias (mean prediction − mean label), R² (NaN for a constant label), the
    means of label and prediction, and the row count."""
    y = np.asarray(y, dtype="float64")
    p = np.asarray(p, dtype="float64")
    error = p - y
    spread = float(np.sum((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mae": float(np.mean(np.abs(error))),
        "bias": float(p.mean() - y.mean()),
        "r2": 1.0 - float(np.sum(error ** 2)) / spread if spread > 0 else float("nan"),
        "mean_label": float(y.mean()),
        "mean_score": float(p.mean()),
        "rows": float(len(y)),
    }


def task_metrics(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The metrics of `task` for labels `y` and predictions `p`."""
    if task == "regression":
        return regression_metrics(y, p)
    return classification_metrics(y, p)


def mean_gap(values: Mapping[str, float]) -> float:
    """Mean prediction − mean label, from either task's metrics."""
    label = values["label_rate"] if "label_rate" in values else values["mean_label"]
    return values["mean_score"] - label


def not_worse(metric: str, challenger: float, champion: float, tolerance: float) -> bool:
    """True when the challenger is within `tolerance` of the champion (or better)."""
    if HIGHER_IS_BETTER[metric]:
        return challenger >= champion - tolerance
    return challenger <= champion + tolerance


def meets_floor(metric: str, value: float, bound: float) -> bool:
    """Absolute bound in the metric's good direction: a floor where higher is better, a
    ceiling where lower is better (rmse, mae, log_loss...)."""
    return value >= bound if HIGHER_IS_BETTER[metric] else value <= bound


def expected_roc_auc(p: np.ndarray) -> float:
    """The ROC AUC to expect when the scores are calibrated probabilities (labels pending).

    Each pair (i, j) counts as positive-above-negative with probability p_i (1 - p_j); ties
    count half, and a row is never paired with itself. NaN when no pair can be formed.
    """
    p = np.asarray(p, dtype="float64")
    if len(p) < 2:
        return float("nan")
    scores, group = np.unique(p, return_inverse=True)
    pos = np.bincount(group, weights=p, minlength=len(scores))
    neg = np.bincount(group, weights=1 - p, minlength=len(scores))
    below = np.cumsum(neg) - neg  # expected negatives strictly below each score
    self_pairs = float(np.sum(p * (1 - p)))
    numerator = float(np.sum(pos * (below + 0.5 * neg))) - 0.5 * self_pairs
    denominator = float(pos.sum() * neg.sum()) - self_pairs
    return numerator / denominator if denominator > 0 else float("nan")
