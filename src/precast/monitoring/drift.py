"""Drift of features and scores between a reference sample and a current one, without labels.

For each feature: the population stability index (PSI), a two-sample test
(Kolmogorov-Smirnov for numeric features, chi-square for categorical ones), the
missing-value rate on both sides and, for categoricals, the out-of-vocabulary rate.
Pure functions over pandas/numpy; the monitor step decides what the reference and
current samples are, stores every `FeatureDrift` row and alerts on `breaches`.

    report = drift_report(train_df, inference_df, ["tenure_days", "plan", "score"],
                          categorical=["plan"])
    for b in breaches(report, Thresholds(psi_max=0.25)):
        ...

PSI measures how far the distribution moved; the tests say whether any move at all is
beyond sampling noise, so on large samples they flag differences too small to matter.
Missing values are a bucket of their own in PSI (a jump in missing rate shows there),
and are left out of the two-sample tests, which compare present values only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal, TypeAlias

import numpy as np
import pandas as pd
from scipy import stats

# Proportion used in place of an empty bucket: PSI has ln(p_cur / p_ref), undefined at 0.
EPSILON = 1e-4
OOV = "(out of vocabulary)"

Values: TypeAlias = pd.Series | np.ndarray | Sequence[object]


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of a two-sample test; `note` says why a degenerate case was not tested."""

    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    note: str | None = None


@dataclass(frozen=True)
class FeatureDrift:
    """Drift of one feature (or the score) between the reference and the current sample."""

    feature: str
    kind: Literal["numeric", "categorical"]
    psi: float
    test: Literal["ks", "chi2"]
    statistic: float
    p_value: float
    missing_rate_ref: float
    missing_rate_cur: float
    oov_rate: float | None  # categoricals only: share of present current values not in vocabulary
    rows_ref: int
    rows_cur: int
    note: str | None = None


@dataclass(frozen=True)
class Thresholds:
    """Limits past which a drift measure is a breach; each field name is also the rule name."""

    psi_max: float = 0.2
    p_value_min: float = 0.01
    missing_rate_increase_max: float = 0.05
    oov_rate_max: float = 0.05


@dataclass(frozen=True)
class Breach:
    """One rule broken by one feature: the measured value and the limit it went past."""

    feature: str
    rule: str
    value: float
    threshold: float


def _series(values: Values, side: str) -> pd.Series:
    """Values as a Series; empty input is an error naming the side (reference/current)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if series.empty:
        raise ValueError(f"{side} sample is empty")
    return series


def _as_float(series: pd.Series) -> np.ndarray:
    """Float array with NaN for missing; infinities count as missing too."""
    x = series.to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isfinite(x), x, np.nan)


def _psi(ref_counts: np.ndarray, cur_counts: np.ndarray, epsilon: float = EPSILON) -> float:
    """PSI = sum((c - r) * ln(c / r)) over bucket proportions, empty buckets floored at epsilon."""
    r = np.maximum(ref_counts / ref_counts.sum(), epsilon)
    c = np.maximum(cur_counts / cur_counts.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def quantile_edges(reference: Values, bins: int = 10) -> np.ndarray:
    """Inner bin edges: the reference's interior quantiles, deduplicated.

    Bins are right-closed, (-inf, e1], (e1, e2], ..., (ek, inf), so values outside the
    reference's range land in the outer bins. A constant column gives one edge at its
    value (so a later move off that value shows); ties merge bins.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    x = _as_float(_series(reference, "reference"))
    x = x[~np.isnan(x)]
    if x.size == 0:
        return np.empty(0)
    return np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))


def numeric_counts(values: Values, edges: np.ndarray, side: str = "current") -> np.ndarray:
    """Counts per bin of `edges` (see quantile_edges), then one last bucket for missing."""
    x = _as_float(_series(values, side))
    present = x[~np.isnan(x)]
    binned = np.bincount(np.searchsorted(edges, present, side="left"), minlength=edges.size + 1)
    return np.append(binned, x.size - present.size)


def psi(reference: Values, current: Values, bins: int = 10) -> float:
    """PSI of a numeric feature on reference-quantile bins plus a missing-value bucket."""
    edges = quantile_edges(reference, bins)
    return _psi(numeric_counts(reference, edges, "reference"), numeric_counts(current, edges))


def vocabulary_of(reference: Values) -> list[str]:
    """The categories present in the reference, as sorted strings."""
    series = _series(reference, "reference")
    return sorted(series[series.notna()].astype(str).unique().tolist())


def category_counts(values: Values, vocabulary: Sequence[str], side: str = "current") -> np.ndarray:
    """Counts per vocabulary category (compared as strings), then out-of-vocabulary, missing."""
    series = _series(values, side)
    present = series[series.notna()].astype(str)
    codes = pd.Categorical(present, categories=list(vocabulary)).codes
    known = np.bincount(codes[codes >= 0], minlength=len(vocabulary))
    return np.append(known, [int((codes < 0).sum()), len(series) - len(present)])


def psi_categorical(
    reference: Values, current: Values, vocabulary: Sequence[str] | None = None
) -> float:
    """PSI over category frequencies, with out-of-vocabulary and missing as buckets of their own.

    The vocabulary defaults to the reference's categories, so categories new in the
    current sample all fall in the out-of-vocabulary bucket.
    """
    vocab = vocabulary_of(reference) if vocabulary is None else list(vocabulary)
    return _psi(category_counts(reference, vocab, "reference"), category_counts(current, vocab))


def missing_rate(values: Values) -> float:
    """Share of rows that are missing (None, NaN, NaT, pd.NA)."""
    return float(_series(values, "sample").isna().mean())


def oov_rate(current: Values, vocabulary: Sequence[str]) -> float:
    """Share of the present (non-missing) values that the vocabulary lacks; 0 when none present."""
    counts = category_counts(current, vocabulary)
    present = int(counts[:-1].sum())
    return float(counts[-2] / present) if present else 0.0


def ks_test(reference: Values, current: Values) -> TwoSampleResult:
    """Two-sample Kolmogorov-Smirnov test on the present values of a numeric feature."""
    ref = _as_float(_series(reference, "reference"))
    cur = _as_float(_series(current, "current"))
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    for side, x in (("reference", ref), ("current", cur)):
        if x.size == 0:
            return TwoSampleResult("ks", float("nan"), float("nan"), f"no values in {side}")
    result = stats.ks_2samp(ref, cur)
    return TwoSampleResult("ks", float(result.statistic), float(result.pvalue))


def chi_square_test(
    reference: Values, current: Values, vocabulary: Sequence[str] | None = None
) -> TwoSampleResult:
    """Chi-square test of reference vs current category counts (vocabulary + out-of-vocabulary).

    Missing values are left out. Categories absent from both samples are dropped; with
    fewer than two categories left there is nothing to compare: p = 1 and a note.
    """
    vocab = vocabulary_of(reference) if vocabulary is None else list(vocabulary)
    table = np.vstack([category_counts(reference, vocab, "reference")[:-1],
                       category_counts(current, vocab)[:-1]])
    for side, row in zip(("reference", "current"), table, strict=True):
        if row.sum() == 0:
            return TwoSampleResult("chi2", float("nan"), float("nan"), f"no values in {side}")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return TwoSampleResult("chi2", 0.0, 1.0, "single category: nothing to compare")
    result = stats.chi2_contingency(table)
    return TwoSampleResult("chi2", float(result.statistic), float(result.pvalue))


def _numeric_drift(feature: str, ref: pd.Series, cur: pd.Series, bins: int) -> FeatureDrift:
    """FeatureDrift of a numeric column; a non-numeric dtype is an error that says what to do."""
    for side, series in (("reference", ref), ("current", cur)):
        if not (pd.api.types.is_numeric_dtype(series) or series.isna().all()):
            raise TypeError(f"feature {feature!r} is not numeric in the {side} frame "
                            f"(dtype {series.dtype}); name it in `categorical`")
    test = ks_test(ref, cur)
    return FeatureDrift(feature, "numeric", psi(ref, cur, bins), test.test, test.statistic,
                        test.p_value, missing_rate(ref), missing_rate(cur), None,
                        len(ref), len(cur), test.note)


def _categorical_drift(
    feature: str, ref: pd.Series, cur: pd.Series, vocabulary: Sequence[str] | None
) -> FeatureDrift:
    """FeatureDrift of a categorical column against `vocabulary` (default: the reference's)."""
    vocab = vocabulary_of(ref) if vocabulary is None else list(vocabulary)
    test = chi_square_test(ref, cur, vocab)
    return FeatureDrift(feature, "categorical", psi_categorical(ref, cur, vocab), test.test,
                        test.statistic, test.p_value, missing_rate(ref), missing_rate(cur),
                        oov_rate(cur, vocab), len(ref), len(cur), test.note)


def _check_frames(reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[str]) -> None:
    """Both frames have rows and every feature; errors name the frame and the feature."""
    for side, frame in (("reference", reference), ("current", current)):
        if frame.empty:
            raise ValueError(f"{side} frame is empty: no rows to measure drift on")
        for feature in features:
            if feature not in frame.columns:
                raise KeyError(f"feature {feature!r} is not a column of the {side} frame "
                               f"(columns: {', '.join(map(str, frame.columns))})")


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str],
    categorical: Mapping[str, Sequence[str]] | Sequence[str] = (),
    bins: int = 10,
) -> list[FeatureDrift]:
    """One FeatureDrift per feature, in order; the score column is measured like any numeric.

    `categorical` names the categorical features, or maps each to its vocabulary (e.g.
    the training vocabulary); by default a vocabulary is the reference's categories.
    """
    vocabularies: Mapping[str, Sequence[str] | None] = (
        categorical if isinstance(categorical, Mapping)
        else dict.fromkeys(categorical, None)
    )
    unknown = sorted(set(vocabularies) - set(features))
    if unknown:
        raise ValueError(f"categorical names features not in `features`: {', '.join(unknown)}")
    _check_frames(reference, current, features)
    return [
        _categorical_drift(f, reference[f], current[f], vocabularies[f]) if f in vocabularies
        else _numeric_drift(f, reference[f], current[f], bins)
        for f in features
    ]


def _thresholds(thresholds: Thresholds | Mapping[str, float] | None) -> Thresholds:
    """Thresholds from the dataclass, a partial dict of its fields (rest default) or None."""
    if isinstance(thresholds, Thresholds):
        return thresholds
    given = dict(thresholds or {})
    allowed = {f.name for f in fields(Thresholds)}
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ValueError(f"unknown drift thresholds {unknown}; allowed: {sorted(allowed)}")
    return replace(Thresholds(), **given)


def breaches(
    report: Sequence[FeatureDrift], thresholds: Thresholds | Mapping[str, float] | None = None,
    per_feature: Mapping[str, Mapping[str, float | None]] | None = None,
) -> list[Breach]:
    """Every rule each feature breaks: PSI above, p-value below, missing-rate rise above, OOV above.

    Limits are strict (a value equal to its limit passes); a NaN measure (an untestable
    sample) breaks no rule, so the missing-rate rule is what catches an all-missing column.
    `per_feature` overrides limits for single features ({feature: {rule: limit}}); a limit
    of None means the rule is not applied to that feature (its measure is still reported).
    """
    t = _thresholds(thresholds)
    overrides = {feature: dict(limits) for feature, limits in (per_feature or {}).items()}
    allowed = {f.name for f in fields(Thresholds)}
    for feature, limits in overrides.items():
        if set(limits) - allowed:
            raise ValueError(f"unknown drift rules {sorted(set(limits) - allowed)} for feature "
                             f"{feature!r}; allowed: {sorted(allowed)}")
    found: list[Breach] = []
    for d in report:
        measures = [("psi_max", d.psi), ("p_value_min", d.p_value),
                    ("missing_rate_increase_max", d.missing_rate_cur - d.missing_rate_ref)]
        if d.oov_rate is not None:
            measures.append(("oov_rate_max", d.oov_rate))
        own = overrides.get(d.feature, {})
        for rule, value in measures:
            limit: float | None = own[rule] if rule in own else getattr(t, rule)
            if limit is None:
                continue
            if value < limit if rule.endswith("_min") else value > limit:
                found.append(Breach(d.feature, rule, float(value), limit))
    return found
