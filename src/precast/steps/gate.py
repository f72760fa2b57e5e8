"""Champion gate: challenger vs champion on the same test set; promote or reject loudly.

Run: `precast run gate --date 2026-03-01` (or `python jobs/gate.py --date ...`).
Both models score the challenger's test set. The challenger is promoted (alias `champion`)
only if it passes every rule: the absolute floors (ceilings for metrics where lower is
better, such as rmse), the calibration bound (mean prediction near the mean label: the
observed label rate for binary, in label units for regression), not worse than the champion
on `gate.metric` by more than the tolerance overall, and, with `gate.require_slices`, on
every slice (`gate.slices`) with at least `gate.min_slice_rows` rows. With no champion yet,
floors and calibration alone decide. The metrics are those of `model.task`
(precast.model.metrics); the gate's metric, which config checks against the task, names it.
The decision (every rule with its numbers) is recorded on the challenger's model version,
and an HTML evidence report (precast.gate.report) is written to the lake and logged to
MLflow, whatever the outcome.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precast import lake as lk
from precast.config import Config, GateConfig
from precast.errors import NotRetryable
from precast.gate import card, champions
from precast.gate.evidence import OVERALL, Decision, Evaluation, Rule, Scored, SliceResult
from precast.model import artifact as ma
from precast.model import metrics as mx
from precast.model import registry
from precast.monitoring.alerts import Alert, raise_alerts
from precast.steps.features import LABEL
from precast.steps.train import load_dataset

log = logging.getLogger(__name__)

DECISION_FILE = "gate_decision.json"


class ChallengerRejectedError(NotRetryable, RuntimeError):
    """The gate kept the champion; the message lists the rules that failed."""


@dataclass(frozen=True)
class GateResult:
    promoted: bool
    challenger_version: str
    champion_version: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    decision: Decision
    report_path: str = ""


# ---------------------------------------------------------------- slices


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
    task = mx.task_of(policy.metric)
    out = []
    for column in policy.slices:
        bins = policy.slice_bins.get(column)
        groups = slice_values(test, column, bins)
        present = set(groups.unique())
        order = bucket_names(bins) + ["(missing)"] if bins else sorted(present)
        for value in [v for v in order if v in present]:
            mask = (groups == value).to_numpy(dtype=bool)
            rows, y = int(mask.sum()), labels[mask]
            chal = mx.task_metrics(task, y, challenger[mask])
            champ = None if champion is None else mx.task_metrics(task, y, champion[mask])
            skipped = ""
            if rows < policy.min_slice_rows:
                skipped = f"{rows} rows < gate.min_slice_rows {policy.min_slice_rows}"
            elif task == "binary" and len(np.unique(y)) < 2:
                skipped = "one class only"
            out.append(SliceResult(column, str(value), rows, chal, champ, skipped))
    return out


# ---------------------------------------------------------------- the decision


def decide(policy: GateConfig, challenger: dict[str, float],
           champion: dict[str, float] | None, tolerance: float | None = None,
           slices: list[SliceResult] | tuple[SliceResult, ...] = (),
           pin: champions.ChampionPeriod | None = None) -> Decision:
    """Every rule of the policy, in a fixed order: a pin, floors, calibration, overall, slices.

    `pin`: the champion's pinned period, when a person pinned it (nothing can replace it).
    """
    tol = policy.tolerance if tolerance is None else tolerance
    rules = [] if pin is None else [Rule(
        "champion not pinned", OVERALL, "pinned", 1.0, 0.0, False,
        note=f"v{pin.model_version} pinned by {pin.decided_by} at "
             f"{pin.valid_from:%Y-%m-%d %H:%M} UTC: {pin.reason} (precast promote --unpin)")]
    rules += [Rule(f"floor {metric}", OVERALL, metric, challenger[metric], bound,
                  mx.meets_floor(metric, challenger[metric], bound))
             for metric, bound in sorted(policy.floors.items())]
    if policy.max_mean_score_gap is not None:
        gap = abs(mx.mean_gap(challenger))
        words = mx.LABEL_MEAN_WORDS[mx.task_of(policy.metric)]
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
    higher = mx.HIGHER_IS_BETTER[metric]
    bound = champion[metric] - tolerance if higher else champion[metric] + tolerance
    return Rule(f"not worse on {metric} (tolerance {tolerance:g})", scope, metric,
                challenger[metric], bound,
                mx.not_worse(metric, challenger[metric], champion[metric], tolerance),
                champion[metric])


# ---------------------------------------------------------------- scoring and recording


def score_version(cfg: Config, ref: registry.ModelRef, test: pd.DataFrame) -> Scored:
    """A registered version's scores and metrics on the test set, with its own feature spec."""
    booster, spec = ma.load(registry.local_model(cfg, ref))
    scores = ma.predict(booster, test, spec)
    gains = booster.get_score(importance_type="gain")  # one number per feature for trees
    importance = {k: float(np.sum(v)) for k, v in gains.items()}
    return Scored(ref.version, scores,
                  mx.task_metrics(cfg.model.task, test[LABEL].to_numpy(), scores),
                  importance, {**ref.tags, "run_id": ref.run_id})


def evaluate(cfg: Config, challenger: registry.ModelRef, champion: registry.ModelRef | None,
             run_date: date) -> Evaluation:
    """Both models on the challenger's test set, overall and per slice."""
    test_date = date.fromisoformat(challenger.tags.get("run_date", run_date.isoformat()))
    test, manifest = load_dataset(cfg.lake.dataset("test", test_date))
    labels = test[LABEL].to_numpy(dtype="float64")
    chal = score_version(cfg, challenger, test)
    champ = score_version(cfg, champion, test) if champion else None
    slices = evaluate_slices(cfg.gate, test, labels, chal.scores,
                             None if champ is None else champ.scores)
    return Evaluation(test_date, str(manifest.get("data_version", "")), labels, chal, champ,
                      tuple(slices))


def decision_record(ev: Evaluation, decision: Decision, policy: GateConfig,
                    tolerance: float) -> dict[str, Any]:
    """The decision as JSON: rules, metrics, slices, versions (an MLflow artifact)."""
    return {
        "decision": "promoted" if decision.promote else "rejected",
        "challenger_version": ev.challenger.version,
        "champion_version": ev.champion.version if ev.champion else None,
        "test_date": ev.test_date.isoformat(), "test_data_version": ev.test_data_version,
        "policy": {**policy.model_dump(mode="json"), "tolerance": tolerance},
        "rules": [asdict(rule) for rule in decision.rules],
        "challenger_metrics": ev.challenger.metrics,
        "champion_metrics": ev.champion.metrics if ev.champion else None,
        "slices": [{**asdict(s), "scope": s.scope} for s in ev.slices],
    }


def _record(cfg: Config, ev: Evaluation, decision: Decision, report: Path,
            record: dict[str, Any]) -> str:
    """The full record and the report on the challenger's training run (MLflow artifacts),
    a summary as tags on its model version; the report's artifact URI."""
    folder = registry.log_artifacts(cfg, ev.challenger.tags["run_id"], "gate",
                                    {DECISION_FILE: json.dumps(record, indent=2)}, [report])
    uri = f"{folder}/{report.name}"
    registry.tag_version(cfg, ev.challenger.version, {
        "gate.decision": record["decision"],
        "gate.rules_failed": json.dumps(decision.failed())[:4000],
        "gate.rules": f"{sum(r.passed for r in decision.rules)} of {len(decision.rules)} passed",
        "gate.challenger_metrics": json.dumps(ev.challenger.metrics),
        "gate.champion_metrics": json.dumps(ev.champion.metrics if ev.champion else None),
        "gate.champion_version": str(ev.champion.version if ev.champion else None),
        "gate.report": uri,
    })
    return uri


def _card_facts(cfg: Config, ev: Evaluation, decision: Decision,
                report_uri: str) -> card.CardFacts:
    """The challenger's model card, complete: slices and the gate's decision included."""
    chal = ev.challenger
    params = card.run_params(cfg, chal.tags["run_id"])
    run_date = chal.tags.get("run_date")
    manifest = None if not run_date else lk.read_json(lk.manifest_path(
        cfg.lake.dataset("train", date.fromisoformat(run_date))))
    return card.CardFacts(
        chal.version, chal.tags["run_id"], chal.tags, chal.tags.get("features", "").split(","),
        params, chal.metrics, manifest or {}, card.monotone_of(params), ev.slices,
        decision, report_uri)


def _pin(cfg: Config, champion: registry.ModelRef | None,
         challenger: registry.ModelRef) -> champions.ChampionPeriod | None:
    """The champion's pin, when a person pinned it and the challenger is another version."""
    if champion is None or champion.version == challenger.version:
        return None
    now = champions.current(cfg.predictions_url, cfg.model.name)
    return now if now is not None and now.pinned else None  # agreed_champion: same version


def run(cfg: Config, run_date: date, tolerance: float | None = None) -> GateResult:
    """Score both models on the challenger's test set, decide, report, promote or raise."""
    from precast.gate import report as gate_report

    challenger = registry.by_alias(cfg, registry.CHALLENGER)
    if challenger is None:
        raise LookupError(f"no {registry.CHALLENGER!r} version of {cfg.model.name}; train first")
    champion = champions.agreed_champion(cfg)
    ev = evaluate(cfg, challenger, champion, run_date)
    tol = cfg.gate.tolerance if tolerance is None else tolerance
    decision = decide(cfg.gate, ev.challenger.metrics,
                      ev.champion.metrics if ev.champion else None, tol, ev.slices,
                      _pin(cfg, champion, challenger))
    record = decision_record(ev, decision, cfg.gate, tol)
    report = gate_report.write(cfg, run_date, ev, decision, record)
    uri = _record(cfg, ev, decision, report, record)
    log.info("gate evidence report: %s (MLflow artifact %s)", report, uri)
    card.log(cfg, _card_facts(cfg, ev, decision, uri))
    champ_version = ev.champion.version if ev.champion else None
    result = GateResult(decision.promote, challenger.version, champ_version,
                        ev.challenger.metrics, ev.champion.metrics if ev.champion else None,
                        decision, str(report))
    if not decision.promote:
        kept = f"v{champ_version}" if champ_version else "(none)"
        raise_alerts(cfg, [Alert(run_date, "challenger_rejected", f"v{challenger.version}",
                                 f"challenger v{challenger.version} rejected, champion {kept} "
                                 f"stays: {'; '.join(decision.failed())[:1500]} (evidence: "
                                 f"{uri})", severity="critical")])
        raise ChallengerRejectedError(f"challenger v{challenger.version} rejected, champion "
                                      f"{kept} stays: " + "; ".join(decision.failed())
                                      + f" (evidence: {uri})")
    if champion is None or champion.version != challenger.version:
        champions.change(cfg, challenger.version, decided_by="gate", decision="gate",
                         evidence=uri, reason=f"passed all {len(decision.rules)} rules"
                         + (f" against v{champ_version}" if champ_version else ""))
    log.info("gate promoted %s v%s (%d rules passed)", cfg.model.name, challenger.version,
             len(decision.rules))
    return result
