"""Monitor: drift, estimated and realised performance of the champion; alerts.

Run: `precast run monitor --date D` (after the day's training and predict chains).

- **Drift** (no labels needed): every model feature and the score of the inference
  snapshot D against the champion's training reference (a sample of its train dataset,
  scored by the champion): PSI, KS or chi-square, missing and out-of-vocabulary rates
  (precast.monitoring.drift), stored on every run, breaches alerted.
- **Estimate** (binary): the ROC AUC to expect on D's predictions if the scores are
  calibrated (metrics.expected_roc_auc), stored with the mean score while D's labels are
  pending. Regression has no label-free estimate of quality: none is stored but the mean
  score (drift of the score is what watches a regression model before its labels arrive).
- **Realised performance**: snapshot S = D − label horizon now has complete labels; they are
  the test dataset of D (the use case's label SQL over the newer logs). S's published predictions
  (kept in the lake as Parquet, retired or not) joined to them give the live metrics of
  `model.task` (precast.metrics; binary: ROC AUC, log loss, calibration error...;
  regression: RMSE, MAE, R²) and bias (mean prediction − mean label), overall and per
  slice, stored beside S's estimate so the estimate's error shows over time. Breaches
  are alerted: binary ROC AUC under monitor.min_roc_auc, regression RMSE over
  monitor.max_rmse, and |bias| over monitor.max_bias (each when set).

Rows go to `model_metrics`, alerts to `alerts` (precast.monitoring.alerts); both are keyed by
snapshot, so rerunning a day replaces its metrics and raises no alert twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from precast import store
from precast.config import Config
from precast.data.datasets import LABEL, load_dataset
from precast.gate.policy import slice_values
from precast.lake import exists, manifest_path
from precast.metrics import LABEL_MEAN_WORDS, SUMMARY, expected_roc_auc, mean_gap, task_metrics
from precast.model import artifact, registry
from precast.monitoring import drift
from precast.monitoring import report as monitor_report
from precast.monitoring.alerts import Alert, raise_alerts
from precast.monitoring.model_metrics import MetricRow, write_metrics
from precast.resources import statement

log = logging.getLogger(__name__)

SCORE = "score"
RETRAIN_REQUESTED = "retrain_requested"  # the alert rule that records a retraining request


@dataclass(frozen=True)
class MonitorResult:
    run_date: date
    model_version: str
    features_checked: int
    drift_breaches: tuple[str, ...]
    estimated_roc_auc: float  # NaN for regression (no label-free estimate)
    labelled_snapshot: date | None  # the snapshot whose realised metrics were computed
    live: dict[str, float] | None  # its overall realised metrics (None: not available yet)
    alerts_raised: int
    report_path: str


def _drift_rows(report: list[drift.FeatureDrift]) -> list[MetricRow]:
    rows = []
    for d in report:
        values = {"psi": d.psi, "statistic": d.statistic, "p_value": d.p_value,
                  "missing_rate": d.missing_rate_cur, "missing_rate_reference": d.missing_rate_ref,
                  "oov_rate": d.oov_rate}
        rows += [MetricRow(d.feature, name, value, rows_used=d.rows_cur)
                 for name, value in values.items() if value is not None]
    return rows


def _reference(cfg: Config, champion: registry.ModelRef, booster: Any,
               spec: artifact.FeatureSpec) -> pd.DataFrame:
    """A seeded sample of the champion's training rows, with the champion's scores."""
    lake = cfg.lake
    trained = date.fromisoformat(champion.tags["run_date"])
    ref, _ = load_dataset(lake.dataset("train", trained))
    if len(ref) > cfg.monitor.reference_rows:
        ref = ref.sample(cfg.monitor.reference_rows, random_state=0)
    return ref.assign(**{SCORE: artifact.predict(booster, ref, spec)})


def _current(cfg: Config, run_date: date, booster: Any, spec: artifact.FeatureSpec) -> pd.DataFrame:
    """The inference rows of `run_date` with the champion's scores."""
    cur, _ = load_dataset(cfg.lake.dataset("inference", run_date))
    return cur.assign(**{SCORE: artifact.predict(booster, cur, spec)})


def estimated(cfg: Config, scores: np.ndarray) -> tuple[float, list[MetricRow]]:
    """The label-free estimate of the snapshot's ROC AUC (binary; NaN for regression, which
    has none) and the rows stored for it: that estimate (binary) and the mean score."""
    mean = MetricRow(SCORE, "mean_score", float(scores.mean()), rows_used=len(scores))
    if cfg.model.task != "binary":
        return float("nan"), [mean]
    estimate = expected_roc_auc(scores)
    return estimate, [MetricRow(SCORE, "roc_auc", estimate, rows_used=len(scores)), mean]


def check_drift(cfg: Config, report: list[drift.FeatureDrift],
                run_date: date) -> tuple[list[MetricRow], list[Alert]]:
    """Drift rows for every feature and the score, and an alert per breach."""
    m = cfg.monitor
    limits = drift.Thresholds(psi_max=m.psi_max, p_value_min=m.p_value_min or 0.0,
                              missing_rate_increase_max=m.missing_rate_increase_max,
                              oov_rate_max=m.oov_rate_max)
    alerts = [Alert(run_date, f"drift_{b.rule}", b.feature,
                    f"{b.feature}: {b.rule} {b.value:.4g} beyond {b.threshold:g} "
                    f"(inference {run_date} vs training reference)", b.value, b.threshold)
              for b in drift.breaches(report, limits, m.feature_limits)]
    return _drift_rows(report), alerts


def realised(cfg: Config, run_date: date) -> tuple[date, str, pd.DataFrame] | None:
    """(S, the model version that scored S, S's predictions joined to their labels), or
    None while S = run_date − horizon has no published predictions or no labels yet."""
    lake = cfg.lake
    snapshot = run_date - timedelta(days=cfg.features.label_horizon_days)
    predictions_path = lake.predictions(snapshot)
    labels_path = lake.dataset("test", run_date)  # features + labels of S (see features)
    if not (exists(manifest_path(predictions_path))
            and exists(manifest_path(labels_path))):
        log.info("no realised metrics yet for %s (predictions or labels missing)", snapshot)
        return None
    predictions = pd.read_parquet(predictions_path, columns=["entity_id", "score",
                                                             "model_version"])
    labelled, _ = load_dataset(labels_path)
    labelled = labelled[labelled["snapshot_date"].astype(str).str[:10] == snapshot.isoformat()]
    key = cfg.events.entity_key
    joined = labelled.merge(predictions, left_on=labelled[key].astype(str),
                            right_on="entity_id", how="inner")
    versions = sorted(predictions["model_version"].astype(str).unique())
    return snapshot, ",".join(versions), joined


def live_metrics(cfg: Config, joined: pd.DataFrame) -> list[MetricRow]:
    """Realised metrics overall and per gate slice with enough rows."""
    task = cfg.model.task
    y, p = joined[LABEL].to_numpy("float64"), joined[SCORE].to_numpy("float64")
    rows = _metric_rows(task, y, p, "")
    for column in cfg.gate.slices:
        if column not in joined.columns:
            continue
        groups = slice_values(joined, column, cfg.gate.slice_bins.get(column))
        for value in sorted(groups.unique()):
            mask = (groups == value).to_numpy(dtype=bool)
            if mask.sum() >= cfg.monitor.min_slice_rows:
                rows += _metric_rows(task, y[mask], p[mask], f"{column}={value}")
    return rows


def _metric_rows(task: str, y: np.ndarray, p: np.ndarray, scope: str) -> list[MetricRow]:
    """The task's summary metrics (precast.metrics.SUMMARY), bias last."""
    values = task_metrics(task, y, p)
    values["bias"] = mean_gap(values)
    names = [name for name in SUMMARY[task] if name != "bias"] + ["bias"]
    return [MetricRow(SCORE, name, values[name], scope, len(y)) for name in names]


def performance_alerts(cfg: Config, snapshot: date, rows: list[MetricRow]) -> list[Alert]:
    """Overall: binary live ROC AUC under monitor.min_roc_auc, regression live RMSE over
    monitor.max_rmse, |bias| over monitor.max_bias (each when set)."""
    overall = {r.metric: r.value for r in rows if r.slice == ""}
    m, out = cfg.monitor, []
    auc, rmse, bias = overall.get("roc_auc"), overall.get("rmse"), overall.get("bias")
    if cfg.model.task == "binary" and auc is not None and auc == auc and auc < m.min_roc_auc:
        out.append(Alert(snapshot, "live_roc_auc_below_min", SCORE,
                         f"live ROC AUC {auc:.4f} of snapshot {snapshot} is under "
                         f"{m.min_roc_auc:g}", auc, m.min_roc_auc, "critical"))
    if m.max_rmse is not None and rmse is not None and rmse > m.max_rmse:
        out.append(Alert(snapshot, "live_rmse_above_max", SCORE,
                         f"live RMSE {rmse:.4g} of snapshot {snapshot} is over "
                         f"{m.max_rmse:g}", rmse, m.max_rmse, "critical"))
    if m.max_bias is not None and bias is not None and abs(bias) > m.max_bias:
        words = LABEL_MEAN_WORDS[cfg.model.task]
        out.append(Alert(snapshot, "prediction_bias", SCORE,
                         f"mean score minus observed {words} ({cfg.model.target_description}) "
                         f"is {bias:+.4f} for snapshot {snapshot} (limit {m.max_bias:g})", bias,
                         m.max_bias))
    return out


@dataclass(frozen=True)
class RetrainDecision:
    """Whether monitoring asks for a retraining on `run_date`, and why (or why not)."""

    retrain: bool
    reason: str
    violated: tuple[date, ...]  # alerted windows among the last n
    windows: tuple[date, ...]  # the last n monitored windows, newest first


def _dates(conn: Any, name: str, params: dict[str, Any]) -> list[date]:
    rows = conn.execute(sa.text(statement(name)), params)
    return [date.fromisoformat(str(row[0])[:10]) for row in rows]


def retrain_decision(cfg: Config, run_date: date) -> RetrainDecision:
    """The retrain rule: alerts in >= k of the last n monitored windows, the latest among
    them, and outside the cool-down: no retraining requested, and no champion trained,
    within `retrain_cooldown_days` before `run_date` (one drift, one retraining). Days are
    run dates, so a backfill or a replayed history decides as the live run did."""
    m = cfg.monitor
    with store.connected(cfg.predictions_url) as engine:
        with engine.connect() as conn:
            until = {"until": run_date.isoformat(), "model_name": cfg.model.name}
            windows = tuple(_dates(conn, "monitor_windows", until)[: m.retrain_n])
            bad = set(_dates(conn, "monitor_violations", until))
            requested = [d for d in _dates(conn, "retrain_requests", until) if d < run_date]
    violated = tuple(d for d in windows if d in bad)
    rule = f"{len(violated)} of the last {len(windows)} windows alerted (rule: {m.retrain_k} " \
           f"of {m.retrain_n}, the latest included)"
    if not windows or windows[0] != run_date or run_date not in bad \
            or len(violated) < m.retrain_k:
        return RetrainDecision(False, f"no retraining: {rule}", violated, windows)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    recent = [(d, f"a retraining was requested on {d}") for d in requested[:1]]
    if champion is not None and champion.tags.get("run_date"):
        trained = date.fromisoformat(champion.tags["run_date"])
        recent.append((trained, f"champion v{champion.version} was trained on {trained}"))
    for when, what in sorted(recent, reverse=True)[:1]:
        if (run_date - when).days < m.retrain_cooldown_days:
            return RetrainDecision(False, f"no retraining: {rule}, but {what}, within the "
                                   f"{m.retrain_cooldown_days}-day cool-down", violated, windows)
    return RetrainDecision(True, f"retrain: {rule}", violated, windows)


def request_retrain(cfg: Config, run_date: date, decision: RetrainDecision) -> bool:
    """Record (and send, as an alert) that monitoring asked for a retraining on `run_date`;
    the cool-down counts from it. False when it was already recorded for that date."""
    return bool(raise_alerts(cfg, [Alert(run_date, RETRAIN_REQUESTED, cfg.model.name,
                                         f"{cfg.model.name}: {decision.reason}")]))


def run(cfg: Config, run_date: date) -> MonitorResult:
    """Drift and estimate for `run_date`, realised metrics for its labelled snapshot."""
    champion = registry.by_alias(cfg, registry.CHAMPION)
    if champion is None:
        raise LookupError(f"no champion for {cfg.model.name}: nothing to monitor yet")
    booster, spec = artifact.load(registry.local_model(cfg, champion))
    current = _current(cfg, run_date, booster, spec)
    reference = _reference(cfg, champion, booster, spec)
    report = drift.drift_report(reference, current, [*spec.names, SCORE],
                                categorical=dict(spec.categorical))
    drift_rows, alerts = check_drift(cfg, report, run_date)
    write_metrics(cfg, run_date, champion.version, "drift", drift_rows)
    estimate, estimates = estimated(cfg, current[SCORE].to_numpy())
    write_metrics(cfg, run_date, champion.version, "estimate", estimates)
    live, labelled = None, realised(cfg, run_date)
    if labelled is not None:
        snapshot, version, joined = labelled
        rows = live_metrics(cfg, joined)
        write_metrics(cfg, snapshot, version, "performance", rows)
        alerts += performance_alerts(cfg, snapshot, rows)
        live = {r.metric: float(r.value) for r in rows
                if r.slice == "" and r.value is not None}
    new = raise_alerts(cfg, alerts)
    page = monitor_report.write(cfg, run_date, champion.version,
                                reference[SCORE].to_numpy(), current[SCORE].to_numpy(), report,
                                alerts)
    result = MonitorResult(run_date, champion.version, len(spec.names) + 1,
                           tuple(sorted({a.subject for a in alerts
                                         if a.rule.startswith("drift_")})),
                           estimate, labelled[0] if labelled else None, live, len(new),
                           str(page))
    log.info("monitor %s: %d features checked, drift on %s, estimated AUC %.4f, live %s, "
             "%d new alert(s); report %s", run_date, result.features_checked,
             list(result.drift_breaches) or "none", estimate, live, len(new), page)
    return result
