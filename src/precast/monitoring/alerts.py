"""Alerts in the prediction store: deduplicated, recorded, and delivered at least once.

Every alert is raised once per (snapshot date, rule, subject) — the `alerts` table's unique
key — and each new one is a structured log line (`ALERT {json}`), a row in `alerts`, a
POST of the same JSON to `monitor.webhook_url` when one is configured, and a line of one
e-mail to `monitor.email_to` through Airflow's SMTP connection `monitor.smtp_conn_id` (one
e-mail per batch).

Delivery is at least once: the alert is committed first, each attempt per target is then
recorded in `alert_deliveries` (delivered_at only after the target accepted it), and every
raise — a monitor run, a failed DAG run, with or without new alerts — first retries what a
configured target has not accepted yet (bounded by `monitor.delivery_max_attempts` and
`monitor.delivery_max_age_days`). A crash between commit and delivery therefore ends in a
retry, never a lost alert; a duplicate is possible, so every payload carries a stable `id`.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from precast import store
from precast.config import Config, redact_text
from precast.monitoring.model_metrics import stored_value
from precast.resources import statement

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10
_URL_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")




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






def raise_alerts(cfg: Config, alerts: Sequence[Alert]) -> list[Alert]:
    """Record `alerts`, then deliver whatever a configured target has not accepted yet (older
    alerts first, then the new ones); the ones not raised before (those are logged)."""
    now = datetime.now(UTC)
    new: list[Alert] = []
    alerts = [replace(a, message=redact_text(a.message)) for a in alerts]  # never a secret
    with store.connected(cfg.predictions_url, cfg.stores.writer_role) as engine:
        with engine.begin() as conn:
            for alert in alerts:
                params = {**asdict(alert), "snapshot_date": alert.snapshot_date.isoformat(),
                          "raised_at": now.isoformat(sep=" "), "value": stored_value(alert.value),
                          "threshold": stored_value(alert.threshold)}
                if conn.execute(_statement("alert_insert"), params).rowcount:
                    new.append(alert)
        for alert in new:
            log.warning("ALERT %s", json.dumps(_payload(cfg, alert, now), sort_keys=True))
        _deliver(cfg, engine, now)
    return new


def alert_id(cfg: Config, alert: Alert) -> str:
    """The alert's stable id in every payload: the same on each delivery attempt, so a
    receiver can drop the duplicates that at-least-once delivery may bring."""
    key = "\x1f".join([cfg.model.name, alert.snapshot_date.isoformat(), alert.rule,
                       alert.subject])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _payload(cfg: Config, alert: Alert, raised_at: datetime) -> dict[str, Any]:
    return {"id": alert_id(cfg, alert), "source": "precast", "model_name": cfg.model.name,
            **asdict(alert), "snapshot_date": alert.snapshot_date.isoformat(),
            "raised_at": raised_at.isoformat()}


@dataclass(frozen=True)
class _Pending:
    """A recorded alert that one target has not accepted yet."""

    row_id: int
    raised_at: datetime
    alert: Alert


def _deliver(cfg: Config, engine: sa.Engine, now: datetime) -> None:
    """Send every pending alert to each configured target, recording each attempt."""
    if cfg.monitor.webhook_url:
        for item in _pending(cfg, engine, "webhook", now):
            error = _attempt(_post, cfg.monitor.webhook_url,
                             _payload(cfg, item.alert, item.raised_at))
            error = error and _scrub(error, cfg.monitor.webhook_url)
            _record(engine, [item.row_id], "webhook", error)
            if error:  # the rest waits for the next run rather than time out one by one
                log.error("alert webhook %s failed (the alert is recorded in the alerts "
                          "table and retried on the next run): %s",
                          redact_text(cfg.monitor.webhook_url), error)
                break
    if cfg.monitor.email_to and (batch := _pending(cfg, engine, "email", now)):
        error = _attempt(_email, cfg, [item.alert for item in batch])
        _record(engine, [item.row_id for item in batch], "email", error)
        if error:
            log.error("alert e-mail through Airflow connection %s failed (the alerts are "
                      "recorded in the alerts table and retried on the next run): %s",
                      cfg.monitor.smtp_conn_id, error)


def _pending(cfg: Config, engine: sa.Engine, target: str, now: datetime) -> list[_Pending]:
    """The alerts `target` has not accepted, oldest first, within the retry bounds."""
    since = now - timedelta(days=cfg.monitor.delivery_max_age_days)
    with engine.connect() as conn:
        rows = conn.execute(_statement("alert_deliveries_pending"), {
            "target": target, "max_attempts": cfg.monitor.delivery_max_attempts,
            "since": since.isoformat(sep=" ")}).mappings().all()
    return [_Pending(int(r["alert_id"]), store.as_utc(r["raised_at"]) or now, Alert(
        store.as_date(r["snapshot_date"]) or now.date(), r["rule"], r["subject"], r["message"],
        r["value"], r["threshold"], r["severity"])) for r in rows]


def _attempt(send: Callable[..., None], *args: Any) -> str | None:
    """None when `send(*args)` succeeded, else its error as redacted text."""
    try:
        send(*args)
    except Exception as exc:  # noqa: BLE001 - any delivery error; recorded and retried
        return redact_text(f"{type(exc).__name__}: {exc}")[:1000]
    return None


def _scrub(text: str, url: str) -> str:
    """`text` without the values of the environment variables that `url` names (${VAR}):
    the way to keep a secret, even one in the path, out of config, logs and the store."""
    for name in _URL_VARIABLE.findall(url):
        if value := os.environ.get(name):
            text = text.replace(value, "***")
    return text


def _record(engine: sa.Engine, row_ids: Sequence[int], target: str, error: str | None) -> None:
    """One attempt of `target` for each alert: delivered now, or failed with `error`."""
    at = datetime.now(UTC).isoformat(sep=" ")
    with engine.begin() as conn:
        conn.execute(_statement("alert_delivery_record"), [
            {"alert_id": row_id, "target": target, "attempted_at": at,
             "delivered_at": None if error else at, "last_error": error}
            for row_id in row_ids])


def _post(url: str, payload: dict[str, Any]) -> None:
    """POST one alert as JSON (its id also as the Idempotency-Key header)."""
    request = urllib.request.Request(
        os.path.expandvars(url), data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "precast-monitor",
                 "Idempotency-Key": payload["id"]})
    with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
        response.read()


def email_subject(cfg: Config, alerts: Sequence[Alert]) -> str:
    rules = ", ".join(sorted({a.rule for a in alerts}))
    days = sorted({a.snapshot_date.isoformat() for a in alerts})
    return f"[precast] {cfg.model.name}: {len(alerts)} new alert(s) for {', '.join(days)}: {rules}"


def _email(cfg: Config, alerts: Sequence[Alert]) -> None:
    """One HTML e-mail listing `alerts`, through Airflow's SMTP connection."""
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            a.severity, a.snapshot_date, a.rule, a.subject, a.message)) + "</tr>"
        for a in alerts)
    body = ("<p>precast monitoring raised these alerts (all are in the <code>alerts</code> "
            "table):</p><table border=\"1\" cellpadding=\"4\"><tr><th>severity</th>"
            f"<th>snapshot</th><th>rule</th><th>subject</th><th>message</th></tr>{rows}</table>")
    with SmtpHook(smtp_conn_id=cfg.monitor.smtp_conn_id) as hook:
        hook.send_email_smtp(to=list(cfg.monitor.email_to),
                             subject=email_subject(cfg, alerts), html_content=body)


def deliveries(cfg: Config) -> list[dict[str, Any]]:
    """Every delivery record (alert, target, attempts, delivered_at, last_error)."""
    return _rows(cfg, "alert_deliveries_list")


def targets(cfg: Config) -> list[str]:
    """The configured delivery targets: 'webhook', 'email'."""
    return [target for target, on in (("webhook", cfg.monitor.webhook_url),
                                      ("email", cfg.monitor.email_to)) if on]


def undelivered(cfg: Config) -> list[dict[str, Any]]:
    """Per configured target, the alerts tried but not accepted yet: target, alerts, attempts
    (the most among them), last_error (sql/alert_deliveries_undelivered.sql)."""
    return [r for r in _rows(cfg, "alert_deliveries_undelivered") if r["target"] in targets(cfg)]


def _rows(cfg: Config, name: str) -> list[dict[str, Any]]:
    """The rows of the query `sql/<name>.sql` on the store, as dicts."""
    with store.connected(cfg.predictions_url, cfg.stores.writer_role) as engine:
        with engine.connect() as conn:
            rows = conn.execute(_statement(name)).mappings().all()
    return [dict(r) for r in rows]


def alerts_of(cfg: Config, snapshot: date | None = None) -> list[dict[str, Any]]:
    """Recorded alerts, oldest first (all, or those of one snapshot date)."""
    with store.connected(cfg.predictions_url) as engine:
        with engine.connect() as conn:
            rows = conn.execute(_statement("alerts_list")).mappings().all()
    out = [dict(r) for r in rows]
    if snapshot is not None:
        out = [r for r in out if str(r["snapshot_date"])[:10] == snapshot.isoformat()]
    return out


