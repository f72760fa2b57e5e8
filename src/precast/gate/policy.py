"""The gate's policy: how the test set is sliced, and the rules a challenger must pass against
the champion (overall and per slice), with the floors and the mean-score gap."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from precast.config import GateConfig
from precast.gate.evidence import OVERALL, Decision, Rule, SliceResult
from precast.metrics import (
    HIGHER_IS_BETTER,
    LABEL_MEAN_WORDS,
    mean_gap,
    meets_floor,
    not_worse,
    task_metrics,
    task_of,
)

if TYPE_CHECKING:
    from precast.gate.champions import ChampionPeriod


def slice_values(test: pd.DataFrame, column: str, bins: tuple[float, ...] | None) -> pd.Series:
    """Each row's slice label for `column`: the value, or its bucket ("[30, 90)") when binned."""
    if column not in test.columns:
        raise KeyError(f"gate.slices names {column!r}, which the test set does not have "
                       f"(columns: {', '.join(sorted(test.columns))})")
    values = test[column]
    if not bins:
        return values.astype("string").fillna("(missing)")
    edges = [-np.inf, *bins, np.inf]
    cut = pd.cut(values.astype("float64"), edges, right=False, labels=bucket_names(bins))
    return cut.astype("string").fillna("(missing)")


def bucket_names(bins: tuple[float, ...]) -> list[str]:
    """The bucket labels of `bins`, in order: "< 30", "[30, 90)", ..., ">= 180"."""
    edges = [-np.inf, *bins, np.inf]
    return [_bucket(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]


def _bucket(lo: float, hi: float) -> str:
    if np.isinf(lo):
        return f"< {hi:g}"
    return f">= {lo:g}" if np.isinf(hi) else f"[{lo:g}, {hi:g})"


def evaluate_slices(policy: GateConfig, test: pd.DataFrame, labels: np.ndarray,
                    challenger: np.ndarray, champion: np.ndarray | None) -> list[SliceResult]:
    """Metrics of both models on every slice (those of the gate metric's task); slices too
    small, or one-class for binary, are skipped."""
    task = task_of(policy.metric)
    out = []
    for column in policy.slices:
        bins = policy.slice_bins.get(column)
        groups = slice_values(test, column, bins)
        present = set(groups.unique())
        order = bucket_names(bins) + ["(missing)"] if bins else sorted(present)
        for value in [v for v in order if v in present]:
            mask = (groups == value).to_numpy(dtype=bool)
            rows, y = int(mask.sum()), labels[mask]
            chal = task_metrics(task, y, challenger[mask])
            champ = None if champion is None else task_metrics(task, y, champion[mask])
            skipped = ""
            if rows < policy.min_slice_rows:
                skipped = f"{rows} rows < gate.min_slice_rows {policy.min_slice_rows}"
            elif task == "binary" and len(np.unique(y)) < 2:
                skipped = "one class only"
            out.append(SliceResult(column, str(value), rows, chal, champ, skipped))
    return out


def decide(policy: GateConfig, challenger: dict[str, float],
           champion: dict[str, float] | None, tolerance: float | None = None,
           slices: list[SliceResult] | tuple[SliceResult, ...] = (),
           pin: ChampionPeriod | None = None) -> Decision:
    """Every rule of the policy, in a fixed order: a pin, floors, calibration, overall, slices.

    `pin`: the champion's pinned period, when a person pinned it (nothing can replace it).
    """
    tol = policy.tolerance if tolerance is None else tolerance
    rules = [] if pin is None else [Rule(
        "champion not pinned", OVERALL, "pinned", 1.0, 0.0, False,
        note=f"v{pin.model_version} pinned by {pin.decided_by} at "
             f"{pin.valid_from:%Y-%m-%d %H:%M} UTC: {pin.reason} (precast promote --unpin)")]
    rules += [Rule(f"floor {metric}", OVERALL, metric, challenger[metric], bound,
                  meets_floor(metric, challenger[metric], bound))
             for metric, bound in sorted(policy.floors.items())]
    if policy.max_mean_score_gap is not None:
        gap = abs(mean_gap(challenger))
        words = LABEL_MEAN_WORDS[task_of(policy.metric)]
        rules.append(Rule(f"mean score within gap of {words}", OVERALL,
                          "mean_score_gap", gap, policy.max_mean_score_gap,
                          gap <= policy.max_mean_score_gap))
    if champion is not None:
        rules.append(_not_worse(policy.metric, OVERALL, challenger, champion, tol))
        if policy.require_slices:
            rules += [_not_worse(policy.metric, s.scope, s.challenger, s.champion,
                                 policy.slice_tolerance)
                      for s in slices if not s.skipped and s.champion is not None]
    return Decision(all(rule.passed for rule in rules), tuple(rules))


def _not_worse(metric: str, scope: str, challenger: dict[str, float],
               champion: dict[str, float], tolerance: float) -> Rule:
    higher = HIGHER_IS_BETTER[metric]
    bound = champion[metric] - tolerance if higher else champion[metric] + tolerance
    return Rule(f"not worse on {metric} (tolerance {tolerance:g})", scope, metric,
                challenger[metric], bound,
                not_worse(metric, challenger[metric], champion[metric], tolerance),
                champion[metric])
