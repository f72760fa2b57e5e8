"""Classification metrics shared by train, the champion gate and monitoring."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False,
                    "calibration_error": False}


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


def not_worse(metric: str, challenger: float, champion: float, tolerance: float) -> bool:
    """True when the challenger is within `tolerance` of the champion (or better)."""
    if HIGHER_IS_BETTER[metric]:
        return challenger >= champion - tolerance
    return challenger <= champion + tolerance


def meets_floor(metric: str, value: float, bound: float) -> bool:
    """Absolute bound in the metric's good direction (a floor or a ceiling)."""
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
