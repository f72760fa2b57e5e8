"""Champion gate: challenger vs champion on the same test set; promote or reject loudly.

Run: `precast run gate --date 2026-03-01` (or `python jobs/gate.py --date ...`).
Both models score the challenger's test set. The challenger is promoted (alias `champion`)
only if it passes every rule: the absolute floors (ceilings for metrics where lower is
better, such as rmse), the calibration bound (mean prediction near the mean label: the
observed label rate for binary, in label units for regression), not worse than the champion
on `gate.metric` by more than the tolerance overall, and, with `gate.require_slices`, on
every slice (`gate.slices`) with at least `gate.min_slice_rows` rows. With no champion yet,
floors and calibration alone decide. The metrics are those of `model.task`
(precast.metrics); the gate's metric, which config checks against the task, names it.
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

from precast.config import Config, GateConfig
from precast.data.datasets import LABEL, load_dataset
from precast.errors import NotRetryable
from precast.gate import card, champions
from precast.gate.evidence import Decision, Evaluation, Scored
from precast.gate.policy import decide, evaluate_slices
from precast.lake import manifest_path, read_json
from precast.metrics import task_metrics
from precast.model import artifact, registry
from precast.monitoring.alerts import Alert, raise_alerts

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










# ---------------------------------------------------------------- the decision






# ---------------------------------------------------------------- scoring and recording


def score_version(cfg: Config, ref: registry.ModelRef, test: pd.DataFrame) -> Scored:
    """A registered version's scores and metrics on the test set, with its own feature spec."""
    booster, spec = artifact.load(registry.local_model(cfg, ref))
    scores = artifact.predict(booster, test, spec)
    gains = booster.get_score(importance_type="gain")  # one number per feature for trees
    importance = {k: float(np.sum(v)) for k, v in gains.items()}
    return Scored(ref.version, scores,
                  task_metrics(cfg.model.task, test[LABEL].to_numpy(), scores),
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


def decision_record(evaluation: Evaluation, decision: Decision, policy: GateConfig,
                    tolerance: float) -> dict[str, Any]:
    """The decision as JSON: rules, metrics, slices, versions (an MLflow artifact)."""
    return {
        "decision": "promoted" if decision.promote else "rejected",
        "challenger_version": evaluation.challenger.version,
        "champion_version": evaluation.champion.version if evaluation.champion else None,
        "test_date": evaluation.test_date.isoformat(),
        "test_data_version": evaluation.test_data_version,
        "policy": {**policy.model_dump(mode="json"), "tolerance": tolerance},
        "rules": [asdict(rule) for rule in decision.rules],
        "challenger_metrics": evaluation.challenger.metrics,
        "champion_metrics": evaluation.champion.metrics if evaluation.champion else None,
        "slices": [{**asdict(s), "scope": s.scope} for s in evaluation.slices],
    }


def _record(cfg: Config, evaluation: Evaluation, decision: Decision, report: Path,
            record: dict[str, Any]) -> str:
    """The full record and the report on the challenger's training run (MLflow artifacts),
    a summary as tags on its model version; the report's artifact URI."""
    folder = registry.log_artifacts(cfg, evaluation.challenger.tags["run_id"], "gate",
                                    {DECISION_FILE: json.dumps(record, indent=2)}, [report])
    uri = f"{folder}/{report.name}"
    registry.tag_version(cfg, evaluation.challenger.version, {
        "gate.decision": record["decision"],
        "gate.rules_failed": json.dumps(decision.failed())[:4000],
        "gate.rules": f"{sum(r.passed for r in decision.rules)} of {len(decision.rules)} passed",
        "gate.challenger_metrics": json.dumps(evaluation.challenger.metrics),
        "gate.champion_metrics": json.dumps(
            evaluation.champion.metrics if evaluation.champion else None),
        "gate.champion_version": str(evaluation.champion.version if evaluation.champion else None),
        "gate.report": uri,
    })
    return uri


def _card_facts(cfg: Config, evaluation: Evaluation, decision: Decision,
                report_uri: str) -> card.CardFacts:
    """The challenger's model card, complete: slices and the gate's decision included."""
    chal = evaluation.challenger
    params = card.run_params(cfg, chal.tags["run_id"])
    run_date = chal.tags.get("run_date")
    manifest = None if not run_date else read_json(manifest_path(
        cfg.lake.dataset("train", date.fromisoformat(run_date))))
    return card.CardFacts(
        chal.version, chal.tags["run_id"], chal.tags, chal.tags.get("features", "").split(","),
        params, chal.metrics, manifest or {}, card.monotone_of(params), evaluation.slices,
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
    evaluation = evaluate(cfg, challenger, champion, run_date)
    tol = cfg.gate.tolerance if tolerance is None else tolerance
    champion_metrics = evaluation.champion.metrics if evaluation.champion else None
    decision = decide(cfg.gate, evaluation.challenger.metrics, champion_metrics, tol,
                      evaluation.slices, _pin(cfg, champion, challenger))
    record = decision_record(evaluation, decision, cfg.gate, tol)
    report = gate_report.write(cfg, run_date, evaluation, decision, record)
    uri = _record(cfg, evaluation, decision, report, record)
    log.info("gate evidence report: %s (MLflow artifact %s)", report, uri)
    card.log(cfg, _card_facts(cfg, evaluation, decision, uri))
    champ_version = evaluation.champion.version if evaluation.champion else None
    result = GateResult(decision.promote, challenger.version, champ_version,
                        evaluation.challenger.metrics, champion_metrics,
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
