"""Monitoring records in the prediction store: `model_metrics` rows and deduplicated alerts.

Every alert is raised once per (snapshot date, rule, subject) — the `alerts` table's unique
key — and each new one is a structured log line (`ALERT {json}`), a row in `alerts`, a
POST of the same JSON to `monitor.webhook_url` when one is configured, and a line of one
e-mail to `monitor.email_to` through Airflow's SMTP connection `monitor.smtp_conn_id` (one
e-mail per batch of new alerts). A target that fails is logged; the alert stays recorded.
"""

from __future__ import annotations

import html
import json
import logging
import os
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Literal

import sqlalchemy as sa

from precast import store
from precast.config import Config, redact_text
from precast.resources import statement

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10


@dataclass(frozen=True)
class MetricRow:
    """One monitoring figure (see model_metrics in sql/store_schema.sql)."""

    feature: str  # a feature name, or "score"
    metric: str
    value: float | None
    slice: str = ""  # "" = all rows; else e.g. "country=DE"
    rows_used: int | None = None


@dataclass(frozen=True)
class Alert:
    """A breached rule on one subject (a feature, the score, a slice) of one snapshot."""

    snapshot_date: date
    rule: str
    subject: str
    message: str
    value: float | None = None
    threshold: float | None = None
    severity: Literal["warning", "critical"] = "warning"


def _statement(name: str) -> sa.TextClause:
    return sa.text(statement(name))


def _value(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)  # NaN is stored as NULL


def write_metrics(cfg: Config, snapshot: date, model_version: str, kind: str,
                  rows: Sequence[MetricRow]) -> int:
    """Replace the (snapshot, model version, kind) rows of model_metrics with `rows`."""
    now = datetime.now(UTC).isoformat(sep=" ")
    key = {"snapshot_date": snapshot.isoformat(), "model_name": cfg.model.name,
           "model_version": model_version, "kind": kind}
    engine = store.make_engine(cfg.predictions_url)
    try:
        store.ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(_statement("model_metrics_delete"), key)
            if rows:
                conn.execute(_statement("model_metrics_insert"), [
                    {**key, "feature": r.feature, "metric": r.metric, "slice": r.slice,
                     "value": _value(r.value), "rows_used": r.rows_used, "computed_at": now}
                    for r in rows])
    finally:
        engine.dispose()
    return len(rows)


def raise_alerts(cfg: Config, alerts: Sequence[Alert]) -> list[Alert]:
    """Record `alerts`; the ones not raised before (those are logged and sent)."""
    now = datetime.now(UTC)
    new: list[Alert] = []
    alerts = [replace(a, message=redact_text(a.message)) for a in alerts]  # never a secret
    engine = store.make_engine(cfg.predictions_url)
    try:
        store.ensure_schema(engine)
        with engine.begin() as conn:
            for alert in alerts:
                params = {**asdict(alert), "snapshot_date": alert.snapshot_date.isoformat(),
                          "raised_at": now.isoformat(sep=" "), "value": _value(alert.value),
                          "threshold": _value(alert.threshold)}
                if conn.execute(_statement("alert_insert"), params).rowcount:
                    new.append(alert)
    finally:
        engine.dispose()
    for alert in new:
        payload = _payload(cfg, alert, now)
        log.warning("ALERT %s", json.dumps(payload, sort_keys=True))
        if cfg.monitor.webhook_url:
            _post(cfg.monitor.webhook_url, payload)
    if new and cfg.monitor.email_to:
        _email(cfg, new)
    return new


def _payload(cfg: Config, alert: Alert, raised_at: datetime) -> dict[str, Any]:
    return {"source": "precast", "model_name": cfg.model.name, **asdict(alert),
            "snapshot_date": alert.snapshot_date.isoformat(),
            "raised_at": raised_at.isoformat()}


def _post(url: str, payload: dict[str, Any]) -> None:
    """POST one alert as JSON; a failure is logged (the alert is already recorded)."""
    try:
        request = urllib.request.Request(
            os.path.expandvars(url), data=json.dumps(payload).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "precast-monitor"})
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read()
    except Exception as exc:  # noqa: BLE001 - any delivery error; logged, redacted
        log.error("alert webhook %s failed (the alert is recorded in the alerts table): %s",
                  redact_text(url), redact_text(f"{type(exc).__name__}: {exc}"))


def email_subject(cfg: Config, alerts: Sequence[Alert]) -> str:
    rules = ", ".join(sorted({a.rule for a in alerts}))
    days = sorted({a.snapshot_date.isoformat() for a in alerts})
    return f"[precast] {cfg.model.name}: {len(alerts)} new alert(s) for {', '.join(days)}: {rules}"


def _email(cfg: Config, alerts: Sequence[Alert]) -> None:
    """One HTML e-mail listing `alerts`, through Airflow's SMTP connection; failures are
    logged (the alerts are already recorded)."""
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            a.severity, a.snapshot_date, a.rule, a.subject, a.message)) + "</tr>"
        for a in alerts)
    body = ("<p>precast monitoring raised these alerts (all are in the <code>alerts</code> "
            "table):</p><table border=\"1\" cellpadding=\"4\"><tr><th>severity</th>"
            f"<th>snapshot</th><th>rule</th><th>subject</th><th>message</th></tr>{rows}</table>")
    try:
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=cfg.monitor.smtp_conn_id) as hook:
            hook.send_email_smtp(to=list(cfg.monitor.email_to),
                                 subject=email_subject(cfg, alerts), html_content=body)
    except Exception as exc:  # noqa: BLE001 - any SMTP or connection error; logged
        log.error("alert e-mail through Airflow connection %s failed (the alerts are recorded "
                  "in the alerts table): %s", cfg.monitor.smtp_conn_id, redact_text(str(exc)))


def alerts_of(cfg: Config, snapshot: date | None = None) -> list[dict[str, Any]]:
    """Recorded alerts, oldest first (all, or those of one snapshot date)."""
    engine = store.make_engine(cfg.predictions_url)
    try:
        store.ensure_schema(engine)
        with engine.connect() as conn:
            rows = conn.execute(_statement("alerts_list")).mappings().all()
    finally:
        engine.dispose()
    out = [dict(r) for r in rows]
    if snapshot is not None:
        out = [r for r in out if str(r["snapshot_date"])[:10] == snapshot.isoformat()]
    return out


def trend(cfg: Config, kind: str, metric: str, feature: str = "score",
          slice_: str = "") -> list[tuple[date, str, float | None]]:
    """(snapshot date, model version, value) of one metric over time, oldest first
    (sql/model_metrics_trend.sql)."""
    engine = store.make_engine(cfg.predictions_url)
    try:
        store.ensure_schema(engine)
        with engine.connect() as conn:
            rows = conn.execute(_statement("model_metrics_trend"), {
                "model_name": cfg.model.name, "kind": kind, "feature": feature,
                "metric": metric, "slice": slice_}).all()
    finally:
        engine.dispose()
    return [(date.fromisoformat(str(r[0])[:10]), str(r[1]), None if r[2] is None else float(r[2]))
            for r in rows]
