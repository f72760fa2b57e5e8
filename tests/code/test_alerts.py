"""Alerts and metric rows in the prediction store (SQLite and PostgreSQL), the webhook
target against a real local HTTP server, and e-mail through Airflow's SMTP connection
against a real local SMTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from precast import alerts, store
from precast.alerts import Alert, MetricRow
from precast.config import Config
from tests.helpers import Mailbox

DAY = date(2026, 3, 1)


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a free port: its URL and the JSON bodies it got."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _cfg(tmp_path: Path, url: str, webhook: str = "") -> Config:
    return Config(home=tmp_path / "home").with_overrides(
        {"stores.predictions_url": url, "monitor.webhook_url": webhook})


def test_an_alert_is_raised_once_per_snapshot_rule_and_subject(
        store_url: str, tmp_path: Path, hook: tuple[str, list[dict[str, Any]]],
        caplog: pytest.LogCaptureFixture) -> None:
    url, received = hook
    cfg = _cfg(tmp_path, store_url, url)
    drift = Alert(DAY, "drift_psi_max", "plan", "plan: psi 0.31 beyond 0.2", 0.31, 0.2)
    with caplog.at_level("WARNING", logger="precast.alerts"):
        assert alerts.raise_alerts(cfg, [drift]) == [drift]
    assert alerts.raise_alerts(cfg, [drift]) == []  # the same day, rule and subject
    later = Alert(date(2026, 3, 2), "drift_psi_max", "plan", "plan again", 0.4, 0.2)
    other = Alert(DAY, "drift_psi_max", "device", "device", 0.25, 0.2)
    assert alerts.raise_alerts(cfg, [later, other, drift]) == [later, other]
    assert [(a["rule"], a["subject"], str(a["snapshot_date"])[:10])
            for a in alerts.alerts_of(cfg)] == [
        ("drift_psi_max", "plan", "2026-03-01"), ("drift_psi_max", "plan", "2026-03-02"),
        ("drift_psi_max", "device", "2026-03-01")]
    assert [(r["rule"], r["subject"], r["snapshot_date"]) for r in received] == [
        ("drift_psi_max", "plan", "2026-03-01"), ("drift_psi_max", "plan", "2026-03-02"),
        ("drift_psi_max", "device", "2026-03-01")]
    assert received[0]["value"] == 0.31 and received[0]["model_name"] == cfg.model.name
    (line, *_) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert json.loads(line.removeprefix("ALERT "))["message"] == "plan: psi 0.31 beyond 0.2"


def test_a_failing_webhook_loses_no_alert(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    cfg = _cfg(tmp_path, url, f"http://127.0.0.1:{port}/hook")
    alert = Alert(DAY, "live_roc_auc_below_min", "score", "low", 0.55, 0.6, "critical")
    with caplog.at_level("ERROR", logger="precast.alerts"):
        assert alerts.raise_alerts(cfg, [alert]) == [alert]
    assert f"alert webhook http://127.0.0.1:{port}/hook failed" in caplog.text
    assert [a["severity"] for a in alerts.alerts_of(cfg)] == ["critical"]


def test_a_malformed_webhook_neither_raises_nor_leaks_its_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", "https://[hooks/x?token=s3cret")
    alert = Alert(DAY, "live_roc_auc_below_min", "score", "low", 0.55, 0.6, "critical")
    with caplog.at_level("ERROR", logger="precast.alerts"):
        assert alerts.raise_alerts(cfg, [alert]) == [alert]  # recorded, not raised
    assert "token=***" in caplog.text and "s3cret" not in caplog.text


def test_new_alerts_are_e_mailed_once_through_airflows_smtp_connection(
        tmp_path: Path, mailbox: Mailbox) -> None:
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'predictions.db'}").with_overrides({
        "monitor.email_to": ["ops@example.com", "ml@example.com"],
        "monitor.smtp_conn_id": mailbox.conn_id})
    drift = Alert(DAY, "drift_psi_max", "device", "device: psi 0.41 beyond 0.2 <tv>", 0.41, 0.2)
    bias = Alert(DAY, "prediction_bias", "score", "bias +0.08", 0.08, 0.05)
    assert alerts.raise_alerts(cfg, [drift, bias]) == [drift, bias]
    assert alerts.raise_alerts(cfg, [drift]) == []  # nothing new: no e-mail
    (mail,) = mailbox.messages
    assert mail["Subject"] == alerts.email_subject(cfg, [drift, bias]) == (
        f"[precast] {cfg.model.name}: 2 new alert(s) for 2026-03-01: drift_psi_max, "
        "prediction_bias")
    assert mail["To"] == "ops@example.com, ml@example.com"
    assert mail["From"] == "precast@example.com"
    (body,) = [part.get_payload(decode=True).decode() for part in mail.walk()
               if part.get_content_type() == "text/html"]
    assert "device: psi 0.41 beyond 0.2 &lt;tv&gt;" in body and "bias +0.08" in body


def test_a_failing_mail_server_loses_no_alert(tmp_path: Path, mailbox: Mailbox,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AIRFLOW_CONN_PRECAST_DOWN_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port}))
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'predictions.db'}").with_overrides({
        "monitor.email_to": ["ops@example.com"], "monitor.smtp_conn_id": "precast_down_smtp"})
    alert = Alert(DAY, "live_roc_auc_below_min", "score", "low", 0.55, 0.6, "critical")
    with caplog.at_level("ERROR", logger="precast.alerts"):
        assert alerts.raise_alerts(cfg, [alert]) == [alert]
    assert "alert e-mail through Airflow connection precast_down_smtp failed" in caplog.text
    assert [a["rule"] for a in alerts.alerts_of(cfg)] == ["live_roc_auc_below_min"]
    assert mailbox.messages == []


def test_metric_rows_of_a_snapshot_and_kind_are_replaced_on_rerun(store_url: str,
                                                                   tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, store_url)
    alerts.write_metrics(cfg, DAY, "3", "drift", [MetricRow("plan", "psi", 0.1, rows_used=10),
                                                  MetricRow("plan", "p_value", float("nan"))])
    alerts.write_metrics(cfg, DAY, "3", "estimate", [MetricRow("score", "roc_auc", 0.8)])
    alerts.write_metrics(cfg, DAY, "3", "drift", [MetricRow("plan", "psi", 0.2, rows_used=12)])
    engine = store.make_engine(cfg.predictions_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT kind, feature, metric, slice, value, rows_used FROM model_metrics "
                "ORDER BY metric_id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("estimate", "score", "roc_auc", "", 0.8, None),
                                        ("drift", "plan", "psi", "", 0.2, 12)]


def test_an_alert_never_carries_a_secret_to_the_table_or_the_webhook(
        store_url: str, tmp_path: Path, hook: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = hook
    cfg = _cfg(tmp_path, store_url, url)
    failed = Alert(DAY, "dag_run_failed", "churn__training", "gate failed: MLflow at "
                   "http://ml:hunter2@mlflow:5000/?token=t0ps3cret refused", severity="critical")
    (raised,) = alerts.raise_alerts(cfg, [failed])
    expected = "gate failed: MLflow at http://ml:***@mlflow:5000/?token=*** refused"
    assert raised.message == expected
    assert [a["message"] for a in alerts.alerts_of(cfg)] == [expected]
    assert [p["message"] for p in received] == [expected]
