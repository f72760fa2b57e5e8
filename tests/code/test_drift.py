"""Drift measures (PSI, KS, chi-square, missing and unseen-category rates) on small samples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from precast.monitoring import drift
from precast.monitoring.drift import Breach, FeatureDrift, Thresholds


def _normal(rows: int = 5000, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=rows)


def _channels(p_web: float, rows: int = 2000, seed: int = 0) -> pd.Series:
    rest = (1.0 - p_web) / 3
    rng = np.random.default_rng(seed)
    return pd.Series(rng.choice(["web", "app", "tv"], rows, p=[p_web, 2 * rest, rest]))


def _expected_psi(ref_counts: list[int], cur_counts: list[int]) -> float:
    r = np.maximum(np.array(ref_counts) / sum(ref_counts), drift.EPSILON)
    c = np.maximum(np.array(cur_counts) / sum(cur_counts), drift.EPSILON)
    return float(sum((ci - ri) * math.log(ci / ri) for ri, ci in zip(r, c, strict=True)))


def test_identical_samples_show_no_drift() -> None:
    x = _normal()
    shuffled = np.random.default_rng(1).permutation(x)
    assert drift.psi(x, shuffled) < 1e-3
    ks = drift.ks_test(x, shuffled)
    assert ks.statistic == 0.0 and ks.p_value > 0.99


def test_fresh_sample_of_the_same_distribution_stays_under_the_limits() -> None:
    x, y = _normal(seed=0), _normal(seed=1)
    assert drift.psi(x, y) < 0.02
    assert drift.ks_test(x, y).p_value > 0.01


def test_mean_shift_of_one_sd_is_flagged_by_psi_and_ks() -> None:
    x, y = _normal(seed=0), _normal(seed=1, shift=1.0)
    assert drift.psi(x, y) > 0.2
    assert drift.ks_test(x, y).p_value < 1e-6


def test_psi_matches_the_formula_on_hand_counted_bins() -> None:
    reference = np.arange(1.0, 11.0)  # two bins split at the median 5.5: counts 5, 5; none missing
    current = [1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 10.0, None, None]  # counts 3, 5; 2 missing
    np.testing.assert_allclose(drift.quantile_edges(reference, bins=2), [5.5])
    assert drift.psi(reference, current, bins=2) == pytest.approx(
        _expected_psi([5, 5, 0], [3, 5, 2]), rel=1e-12
    )


def test_psi_categorical_matches_the_formula_with_oov_and_missing_buckets() -> None:
    reference = ["a", "a", "a", "b"]
    current = ["a", "b", "b", "c", None]  # c is unseen: the out-of-vocabulary bucket
    # buckets: a, b, out of vocabulary, missing
    assert drift.psi_categorical(reference, current) == pytest.approx(
        _expected_psi([3, 1, 0, 0], [1, 2, 1, 1]), rel=1e-12
    )


def test_values_outside_the_reference_range_fall_in_the_outer_bins() -> None:
    edges = drift.quantile_edges(np.arange(1.0, 11.0), bins=2)
    assert drift.numeric_counts([-100.0, 5.5, 5.6, 1e9, np.inf], edges).tolist() == [2, 2, 1]


def test_categorical_share_change_is_flagged_by_psi_and_chi_square() -> None:
    reference, current = _channels(0.1, seed=0), _channels(0.6, seed=1)
    assert (current == "web").mean() == pytest.approx(0.6, abs=0.03)
    assert drift.psi_categorical(reference, current) > 0.2
    chi2 = drift.chi_square_test(reference, current)
    assert chi2.test == "chi2" and chi2.p_value < 1e-6


def test_same_categorical_distribution_is_not_flagged() -> None:
    reference, current = _channels(0.1, seed=0), _channels(0.1, seed=1)
    assert drift.psi_categorical(reference, current) < 0.02
    assert drift.chi_square_test(reference, current).p_value > 0.01


def test_oov_rate_is_the_exact_share_of_present_values_outside_the_vocabulary() -> None:
    current = pd.Series(["web"] * 20 + ["app"] * 13 + ["tv"] * 7 + [None] * 10)
    assert drift.oov_rate(current, ["web", "app"]) == 7 / 40
    assert drift.oov_rate(current, ["web", "app", "tv"]) == 0.0
    assert drift.oov_rate(pd.Series([None, None]), ["web"]) == 0.0
    [report] = drift.drift_report(pd.DataFrame({"channel": ["web", "app"]}),
                                  pd.DataFrame({"channel": current}), ["channel"],
                                  categorical={"channel": ["web", "app"]})
    assert report.oov_rate == 7 / 40 and report.missing_rate_cur == 10 / 50


def test_missing_rate_jump_shows_in_psi_and_missing_rates() -> None:
    reference = pd.DataFrame({"tenure": _normal(1000)})
    current = reference.copy()
    blanked = np.random.default_rng(2).choice(1000, size=300, replace=False)
    current.loc[blanked, "tenure"] = np.nan
    [report] = drift.drift_report(reference, current, ["tenure"], categorical=())
    assert report.missing_rate_ref == 0.0 and report.missing_rate_cur == 0.3
    assert drift.missing_rate(current["tenure"]) == 0.3
    assert report.psi > 0.2  # the missing bucket alone: 0.3 against EPSILON
    assert report.p_value > 0.01  # the present values are a random subset of the reference
    rules = [b.rule for b in drift.breaches([report])]
    assert rules == ["psi_max", "missing_rate_increase_max"]


def test_constant_and_single_category_columns_report_no_drift() -> None:
    reference = pd.DataFrame({"n": [5.0] * 10, "plan": ["pro"] * 10})
    current = pd.DataFrame({"n": [5.0] * 7, "plan": ["pro"] * 7})
    numeric, categorical = drift.drift_report(reference, current, ["n", "plan"], ["plan"])
    assert (numeric.kind, numeric.psi, numeric.p_value) == ("numeric", 0.0, 1.0)
    assert (categorical.kind, categorical.psi, categorical.p_value) == ("categorical", 0.0, 1.0)
    assert categorical.note is not None and "single category" in categorical.note
    assert (categorical.rows_ref, categorical.rows_cur) == (10, 7)
    assert drift.breaches([numeric, categorical]) == []


def test_a_constant_column_that_moves_is_drift() -> None:
    assert drift.psi([5.0] * 10, [6.0] * 10) > 0.2


def test_score_column_is_measured_as_a_numeric_feature() -> None:
    rng = np.random.default_rng(3)
    reference = pd.DataFrame({"score": rng.beta(2, 5, 3000)})
    current = pd.DataFrame({"score": rng.beta(5, 2, 3000)})
    [report] = drift.drift_report(reference, current, ["score"], categorical=())
    assert (report.feature, report.kind, report.test, report.oov_rate) == (
        "score", "numeric", "ks", None)
    assert report.psi > 0.2 and report.p_value < 1e-6


def _row(feature: str, **measures: float | None) -> FeatureDrift:
    base: dict = dict(psi=0.0, statistic=0.0, p_value=0.5, missing_rate_ref=0.0,
                      missing_rate_cur=0.0, oov_rate=None)
    base.update(measures)
    categorical = base["oov_rate"] is not None
    return FeatureDrift(feature=feature, kind="categorical" if categorical else "numeric",
                        test="chi2" if categorical else "ks", rows_ref=100, rows_cur=100, **base)


def test_breaches_name_exactly_the_rules_broken() -> None:
    report = [
        _row("calm", psi=0.2, p_value=0.01, missing_rate_ref=0.1, missing_rate_cur=0.15,
             oov_rate=0.05),  # every measure exactly at its limit: no breach
        _row("shifted", psi=0.35, p_value=1e-9),
        _row("holes", missing_rate_ref=0.02, missing_rate_cur=0.3),
        _row("channel", oov_rate=0.2),
        _row("untestable", p_value=float("nan")),
    ]
    assert drift.breaches(report) == [
        Breach("shifted", "psi_max", 0.35, 0.2),
        Breach("shifted", "p_value_min", 1e-9, 0.01),
        Breach("holes", "missing_rate_increase_max", pytest.approx(0.28), 0.05),  # type: ignore[arg-type]
        Breach("channel", "oov_rate_max", 0.2, 0.05),
    ]
    assert [(b.feature, b.rule) for b in drift.breaches(report, {"psi_max": 0.5})] == [
        ("shifted", "p_value_min"), ("holes", "missing_rate_increase_max"),
        ("channel", "oov_rate_max")]
    assert drift.breaches(report, Thresholds(0.5, 0.0, 0.5, 0.5)) == []
    with pytest.raises(ValueError, match="unknown drift thresholds \\['psi'\\]"):
        drift.breaches(report, {"psi": 0.1})


def test_per_feature_limits_override_or_switch_off_a_rule() -> None:
    report = [_row("tenure", psi=8.6, p_value=1e-9), _row("sessions", psi=0.35),
              _row("plan", psi=0.3, oov_rate=0.2)]
    per_feature: dict[str, dict[str, float | None]] = {
        "tenure": {"psi_max": None, "p_value_min": None}, "plan": {"psi_max": 0.5}}
    assert [(b.feature, b.rule, b.threshold) for b in drift.breaches(
        report, {"p_value_min": 0.01}, per_feature)] == [
        ("sessions", "psi_max", 0.2), ("plan", "oov_rate_max", 0.05)]
    assert [(b.feature, b.rule) for b in drift.breaches(
        report, None, {"tenure": {"oov_rate_max": 0.1}})] == [  # the other rules' limits stay
        ("tenure", "psi_max"), ("tenure", "p_value_min"), ("sessions", "psi_max"),
        ("plan", "psi_max"), ("plan", "oov_rate_max")]
    with pytest.raises(ValueError, match="unknown drift rules \\['psi'\\] for feature 'plan'"):
        drift.breaches(report, None, {"plan": {"psi": 0.5}})


def test_missing_feature_is_a_key_error_naming_feature_and_frame() -> None:
    reference = pd.DataFrame({"tenure": [1.0, 2.0], "plan": ["a", "b"]})
    with pytest.raises(KeyError, match="'plan' is not a column of the current frame"):
        drift.drift_report(reference, reference[["tenure"]], ["tenure", "plan"], ["plan"])
    with pytest.raises(KeyError, match="'region' is not a column of the reference frame"):
        drift.drift_report(reference, reference, ["region"])


def test_empty_frames_are_value_errors_naming_the_side() -> None:
    frame = pd.DataFrame({"tenure": [1.0, 2.0]})
    with pytest.raises(ValueError, match="reference frame is empty"):
        drift.drift_report(frame.iloc[:0], frame, ["tenure"])
    with pytest.raises(ValueError, match="current frame is empty"):
        drift.drift_report(frame, frame.iloc[:0], ["tenure"])
    with pytest.raises(ValueError, match="current sample is empty"):
        drift.psi([1.0, 2.0], [])


def test_text_column_not_named_categorical_is_a_clear_type_error() -> None:
    frame = pd.DataFrame({"plan": ["free", "pro"]})
    with pytest.raises(TypeError, match="'plan' is not numeric.*name it in `categorical`"):
        drift.drift_report(frame, frame, ["plan"])
    with pytest.raises(ValueError, match="categorical names features not in `features`: plan"):
        drift.drift_report(frame, frame, [], ["plan"])


def test_unbounded_regression_scores_drift_on_the_references_quantiles() -> None:
    """A regression score (spend, in the hundreds) gets bins from the reference's quantiles,
    not [0, 1]: a fresh sample stays quiet, a 20 % rise in spend is flagged."""
    rng = np.random.default_rng(4)
    reference = pd.DataFrame({"score": rng.gamma(4, 60, 5000)})
    same = pd.DataFrame({"score": rng.gamma(4, 60, 5000)})
    higher = pd.DataFrame({"score": 1.2 * rng.gamma(4, 60, 5000)})
    edges = drift.quantile_edges(reference["score"])
    assert len(edges) == 9 and edges.min() > 50  # deciles of the spend, far outside [0, 1]
    (quiet,) = drift.drift_report(reference, same, ["score"])
    (moved,) = drift.drift_report(reference, higher, ["score"])
    assert quiet.psi < 0.02 and moved.psi > 0.1
    limits = Thresholds(psi_max=0.1, p_value_min=0.0)
    assert [(b.feature, b.rule) for b in drift.breaches([quiet, moved], limits)] == [
        ("score", "psi_max")]
