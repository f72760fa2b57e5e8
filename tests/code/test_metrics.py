"""Shared metrics: the calibrated-score estimate of ROC AUC used while labels are pending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from precast.metrics import expected_roc_auc


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
