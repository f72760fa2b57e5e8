"""The champion gate's policy and evidence report, on generated scores (no training needed).

The whole gate (registry, MLflow artifacts, promotion) runs in tests/integration.
"""

from __future__ import annotations

import html
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from precast.config import Config, GateConfig
from precast.gate import policy as gate_policy
from precast.gate import report
from precast.gate.evidence import Decision, Evaluation, Scored
from precast.metrics import classification_metrics, regression_metrics
from precast.steps import gate


def _test_set(rows: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = pd.DataFrame({
        "country": rng.choice(["DE", "FR", "US", "LU"], rows, p=[0.4, 0.3, 0.28, 0.02]),
        "plan": rng.choice(["free", "pro"], rows),
        "tenure_days": rng.integers(0, 400, rows).astype("int64"),
    })
    return test, (rng.random(rows) < 0.3).astype("float64")


def _scores(labels: np.ndarray, signal: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=len(labels))
    return 1 / (1 + np.exp(-(signal * (labels - 0.5) * 2 + noise - 0.9)))


def test_slice_values_bucket_numbers_and_keep_categories() -> None:
    test = pd.DataFrame({"tenure_days": [0, 29, 30, 89, 90, 500, None],
                         "plan": ["free", "pro", None, "pro", "free", "free", "pro"]})
    buckets = gate_policy.slice_values(test, "tenure_days", (30.0, 90.0))
    assert buckets.tolist() == ["< 30", "< 30", "[30, 90)", "[30, 90)", ">= 90", ">= 90",
                                "(missing)"]
    assert gate_policy.slice_values(test, "plan", None).tolist()[:3] == ["free", "pro", "(missing)"]
    with pytest.raises(KeyError, match="gate.slices names 'region'.*columns: plan, tenure"):
        gate_policy.slice_values(test, "region", None)


def test_small_and_one_class_slices_are_listed_but_not_compared() -> None:
    test, labels = _test_set()
    labels[(test["country"] == "FR").to_numpy()] = 0.0
    policy = GateConfig(slices=("country",), min_slice_rows=100)
    slices = gate_policy.evaluate_slices(policy, test, labels, _scores(labels, 1.0, 1),
                                  _scores(labels, 1.0, 2))
    by_scope = {s.scope: s for s in slices}
    assert sorted(by_scope) == ["country=DE", "country=FR", "country=LU", "country=US"]
    assert by_scope["country=FR"].skipped == "one class only"
    assert re.fullmatch(r"\d+ rows < gate.min_slice_rows 100", by_scope["country=LU"].skipped)
    assert by_scope["country=DE"].skipped == ""
    assert sum(s.rows for s in slices) == len(test)


def test_decision_lists_every_rule_with_its_numbers() -> None:
    test, labels = _test_set()
    champion = _scores(labels, 1.2, 1)
    challenger = champion.copy()
    us = (test["country"] == "US").to_numpy()
    challenger[us] = np.random.default_rng(5).random(int(us.sum()))  # useless on one slice
    policy = GateConfig(slices=("country",), min_slice_rows=100,
                        floors={"roc_auc": 0.6, "calibration_error": 0.5},
                        max_mean_score_gap=0.5, tolerance=0.2, slice_tolerance=0.05)
    chal_m, champ_m = (classification_metrics(labels, s) for s in (challenger, champion))
    slices = gate_policy.evaluate_slices(policy, test, labels, challenger, champion)
    decision = gate_policy.decide(policy, chal_m, champ_m, slices=slices)

    names = [(r.name, r.scope) for r in decision.rules]
    assert names[:4] == [("floor calibration_error", "overall"), ("floor roc_auc", "overall"),
                         ("mean score within gap of label rate", "overall"),
                         ("not worse on roc_auc (tolerance 0.2)", "overall")]
    compared = [s.scope for s in slices if not s.skipped]
    assert names[4:] == [("not worse on roc_auc (tolerance 0.05)", s) for s in compared]
    assert not decision.promote
    assert [r.scope for r in decision.rules if not r.passed] == ["country=US"]
    (failure,) = decision.failed()
    us_rule = next(r for r in decision.rules if r.scope == "country=US")
    assert us_rule.champion is not None
    assert us_rule.bound == pytest.approx(us_rule.champion - 0.05)
    assert failure == (f"not worse on roc_auc (tolerance 0.05) [country=US]: challenger "
                       f"{us_rule.value:.4f} vs champion {us_rule.champion:.4f} "
                       f"(bound {us_rule.bound:.4f})")

    lenient = policy.model_copy(update={"require_slices": False})
    assert gate_policy.decide(lenient, chal_m, champ_m, slices=slices).promote


def test_floors_and_calibration_decide_alone_without_a_champion() -> None:
    _, labels = _test_set()
    overconfident = np.clip(_scores(labels, 1.2, 1) + 0.3, 0, 1)
    policy = GateConfig(max_mean_score_gap=0.05, floors={"roc_auc": 0.6})
    decision = gate_policy.decide(policy, classification_metrics(labels, overconfident), None)
    assert [(r.name, r.passed) for r in decision.rules] == [
        ("floor roc_auc", True), ("mean score within gap of label rate", False)]


def _evaluation(with_champion: bool) -> tuple[Evaluation, Decision, GateConfig]:
    test, labels = _test_set()
    policy = GateConfig(slices=("country", "plan", "tenure_days"), min_slice_rows=100)
    chal_scores, champ_scores = _scores(labels, 1.3, 1), _scores(labels, 1.0, 2)
    names = ["sessions_7d", "support_tickets_30d", "tenure_days"]
    chal = Scored("7", chal_scores, classification_metrics(labels, chal_scores),
                  dict(zip(names, [3.0, 2.0, 1.0], strict=True)),
                  {"data_version": "train-abc", "run_id": "r7", "code_version": "c1"})
    champ = Scored("6", champ_scores, classification_metrics(labels, champ_scores),
                   dict(zip(names, [1.0, 2.5, 0.5], strict=True)), {"data_version": "train-xyz"})
    slices = gate_policy.evaluate_slices(policy, test, labels, chal_scores,
                                  champ_scores if with_champion else None)
    evaluation = Evaluation(date(2026, 3, 1), "test-123", labels, chal,
                    champ if with_champion else None, tuple(slices))
    decision = gate_policy.decide(policy, chal.metrics, champ.metrics if with_champion else None,
                           slices=slices)
    return evaluation, decision, policy


@pytest.mark.parametrize("with_champion", [True, False], ids=["vs-champion", "first-model"])
def test_report_is_one_offline_html_file_with_pictures_and_the_decision(
        with_champion: bool, tmp_path: Path) -> None:
    evaluation, decision, policy = _evaluation(with_champion)
    cfg = Config(home=tmp_path, gate=policy)
    record = gate.decision_record(evaluation, decision, policy, policy.tolerance)
    path = report.write(cfg, date(2026, 3, 2), evaluation, decision, record)
    assert path == tmp_path / "precast" / "reports" / "gate" / "2026-03-02" / (
        "gate-v7-vs-v6.html" if with_champion else "gate-v7-first.html")
    page = path.read_text()
    assert page.count("<svg") == 5  # ROC, PR, reliability, slices, importances
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)  # nothing fetched
    assert "<script" not in page
    rule_rows = re.findall(r'<tr class="(pass|fail)">', page)
    assert rule_rows == ["pass" if r.passed else "fail" for r in decision.rules]
    assert f"{len(decision.rules) - len(decision.failed())} of {len(decision.rules)} rules" in page
    assert "train-abc" in page and "test-123" in page
    assert ("train-xyz" in page) == with_champion
    for s in evaluation.slices:
        assert f"<td>{html.escape(s.scope)}</td><td class=num>{s.rows:,}</td>" in page


# ---------------------------------------------------------------- regression

SPEND = "spend over the next 30 days"


def _regression_policy(**changes: object) -> GateConfig:
    return GateConfig(metric="rmse", floors={"rmse": 10.0}, max_mean_score_gap=1.0,
                      tolerance=0.5, slice_tolerance=1.0, slices=("country",),
                      min_slice_rows=100).model_copy(update=changes)


def _predictions(labels: np.ndarray, noise: float | np.ndarray, seed: int) -> np.ndarray:
    """Labels plus centred normal noise of standard deviation `noise` (per row if an array)."""
    return labels + noise * np.random.default_rng(seed).normal(size=len(labels))


def _regression_gate(challenger: np.ndarray, champion: np.ndarray, labels: np.ndarray,
                     test: pd.DataFrame, policy: GateConfig) -> Decision:
    slices = gate_policy.evaluate_slices(policy, test, labels, challenger, champion)
    chal_m, champ_m = (regression_metrics(labels, s) for s in (challenger, champion))
    return gate_policy.decide(policy, chal_m, champ_m, slices=slices)


def _spend(rows: int = 3000) -> tuple[pd.DataFrame, np.ndarray]:
    test, _ = _test_set(rows)
    return test, 50 + 20 * np.random.default_rng(3).normal(size=rows)


def test_regression_gate_promotes_a_lower_rmse_and_rejects_a_higher_one() -> None:
    test, labels = _spend()
    policy = _regression_policy()
    champion = _predictions(labels, 5.0, 1)
    better = _regression_gate(_predictions(labels, 3.0, 2), champion, labels, test, policy)
    assert better.promote, better.failed()
    names = [r.name for r in better.rules]
    assert names[:3] == ["floor rmse", "mean score within gap of mean label",
                         "not worse on rmse (tolerance 0.5)"]
    overall = better.rules[2]
    assert overall.champion is not None
    assert overall.bound == pytest.approx(overall.champion + 0.5)  # lower is better
    assert overall.value < overall.champion

    worse = _regression_gate(_predictions(labels, 8.0, 2), champion, labels, test, policy)
    assert not worse.promote
    failed = [(r.name, r.scope) for r in worse.rules if not r.passed]
    assert ("not worse on rmse (tolerance 0.5)", "overall") in failed
    assert ("floor rmse", "overall") not in failed  # 8 is under the ceiling of 10
    assert all(name.startswith("not worse on rmse") for name, _ in failed)
    assert {scope for _, scope in failed} >= {"overall", "country=DE", "country=FR"}

    within = _regression_gate(champion + 0.01, champion, labels, test, policy)
    assert within.promote  # worse, but by less than the tolerance (in the label's units)


def test_regression_gate_rejects_a_challenger_worse_on_one_slice_only() -> None:
    test, labels = _spend()
    policy = _regression_policy()
    france = (test["country"] == "FR").to_numpy()
    challenger = _predictions(labels, np.where(france, 7.0, 3.0), 2)
    decision = _regression_gate(challenger, _predictions(labels, 5.0, 1), labels, test, policy)
    assert not decision.promote
    assert [(r.scope, r.metric) for r in decision.rules if not r.passed] == [("country=FR",
                                                                              "rmse")]
    lenient = policy.model_copy(update={"require_slices": False})
    assert _regression_gate(challenger, _predictions(labels, 5.0, 1), labels, test,
                            lenient).promote


def test_regression_floors_are_ceilings_and_the_gap_is_in_label_units() -> None:
    _, labels = _spend()
    policy = _regression_policy(floors={"rmse": 4.0, "r2": 0.9})
    biased = _predictions(labels, 5.0, 1) + 2.0
    decision = gate_policy.decide(policy, regression_metrics(labels, biased), None)
    assert [(r.name, r.passed) for r in decision.rules] == [
        ("floor r2", True), ("floor rmse", False), ("mean score within gap of mean label", False)]
    gap = decision.rules[2]
    assert gap.value == pytest.approx(abs(biased.mean() - labels.mean()))
    assert gap.value == pytest.approx(2.0, abs=0.3)


def test_regression_slices_with_a_constant_label_are_compared() -> None:
    test, labels = _spend()
    france = (test["country"] == "FR").to_numpy()
    labels[france] = 10.0
    policy = _regression_policy()
    slices = gate_policy.evaluate_slices(policy, test, labels, _predictions(labels, 3.0, 2), None)
    fr = next(s for s in slices if s.scope == "country=FR")
    assert fr.skipped == "" and fr.challenger["mean_label"] == 10.0
    assert set(fr.challenger) == {"rmse", "mae", "bias", "r2", "mean_label", "mean_score",
                                  "rows"}


def test_regression_report_shows_predicted_vs_actual_and_residuals(tmp_path: Path) -> None:
    test, labels = _spend()
    policy = _regression_policy()
    chal_scores, champ_scores = _predictions(labels, 3.0, 2), _predictions(labels, 5.0, 1)
    names = ["visits_30d", "basket_mean"]
    chal = Scored("3", chal_scores, regression_metrics(labels, chal_scores),
                  {"visits_30d": 2.0, "basket_mean": 1.0}, {"run_id": "r3"})
    champ = Scored("2", champ_scores, regression_metrics(labels, champ_scores),
                   dict(zip(names, [1.0, 1.5], strict=True)), {})
    slices = gate_policy.evaluate_slices(policy, test, labels, chal_scores, champ_scores)
    evaluation = Evaluation(date(2026, 3, 1), "test-9", labels, chal, champ, tuple(slices))
    decision = gate_policy.decide(policy, chal.metrics, champ.metrics, slices=slices)
    cfg = Config.model_validate({"home": str(tmp_path), "gate": policy.model_dump(),
                                 "model": {"task": "regression", "target_description": SPEND}})
    record = gate.decision_record(evaluation, decision, policy, policy.tolerance)
    page = report.write(cfg, date(2026, 3, 2), evaluation, decision, record).read_text()
    assert page.count("<svg") == 4  # predicted vs actual, residuals, slices, importances
    assert f"Predicted vs actual {SPEND}" in page and "Residuals (prediction" in page
    assert "ROC" not in page and "churn" not in page
    assert f"mean label ({SPEND}) {labels.mean():.3f}" in page
    assert "Floors on rmse, where lower is better, are ceilings" in page
    assert "<td>rmse</td>" in page and "<td>roc_auc</td>" not in page
    assert re.findall(r'<tr class="(pass|fail)">', page) == [
        "pass" if r.passed else "fail" for r in decision.rules]
