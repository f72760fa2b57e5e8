"""Alerts and metric rows in the prediction store (SQLite and PostgreSQL), the webhook
target against a real local HTTP server, and e-mail through Airflow's SMTP connection
against a real local SMTP server."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from airflow.sdk import Context

from precast import store
from precast.cli import console
from precast.config import Config
from precast.monitoring import alerts, model_metrics
from precast.monitoring.alerts import Alert
from precast.monitoring.model_metrics import MetricRow
from tests.helpers import Mailbox

DAY = date(2026, 3, 1)


@dataclass
class Receiver:
    """A real webhook receiver: its URL, the status it answers (settable), the JSON bodies
    it accepted and every body it was sent (accepted or not)."""

    url: str
    status: int = 204
    received: list[dict[str, Any]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free port."""
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            box[0].sent.append(body)
            if box[0].status < 300:
                box[0].received.append(body)
            self.send_response(box[0].status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(f"http://127.0.0.1:{server.server_port}/hook"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box[0]
    server.shutdown()


@pytest.fixture
def hook(receiver: Receiver) -> tuple[str, list[dict[str, Any]]]:
    """A webhook receiver that accepts everything: its URL and the JSON bodies it got."""
    return receiver.url, receiver.received


def _cfg(tmp_path: Path, url: str, webhook: str = "") -> Config:
    return Config(home=tmp_path / "home").with_overrides(
        {"stores.predictions_url": url, "monitor.webhook_url": webhook})


def test_an_alert_is_raised_once_per_snapshot_rule_and_subject(
        store_url: str, tmp_path: Path, hook: tuple[str, list[dict[str, Any]]],
        caplog: pytest.LogCaptureFixture) -> None:
    url, received = hook
    cfg = _cfg(tmp_path, store_url, url)
    drift = Alert(DAY, "drift_psi_max", "plan", "plan: psi 0.31 beyond 0.2", 0.31, 0.2)
    with caplog.at_level("WARNING", logger="precast.monitoring.alerts"):
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
    with caplog.at_level("ERROR", logger="precast.monitoring.alerts"):
        assert alerts.raise_alerts(cfg, [alert]) == [alert]
    assert f"alert webhook http://127.0.0.1:{port}/hook failed" in caplog.text
    assert [a["severity"] for a in alerts.alerts_of(cfg)] == ["critical"]


def test_a_malformed_webhook_neither_raises_nor_leaks_its_token(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", "https://[hooks/x?token=s3cret")
    alert = Alert(DAY, "live_roc_auc_below_min", "score", "low", 0.55, 0.6, "critical")
    with caplog.at_level("ERROR", logger="precast.monitoring.alerts"):
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
    with caplog.at_level("ERROR", logger="precast.monitoring.alerts"):
        assert alerts.raise_alerts(cfg, [alert]) == [alert]
    assert "alert e-mail through Airflow connection precast_down_smtp failed" in caplog.text
    assert [a["rule"] for a in alerts.alerts_of(cfg)] == ["live_roc_auc_below_min"]
    assert mailbox.messages == []


def test_metric_rows_of_a_snapshot_and_kind_are_replaced_on_rerun(store_url: str,
                                                                   tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, store_url)
    model_metrics.write_metrics(cfg, DAY, "3", "drift", [
        MetricRow("plan", "psi", 0.1, rows_used=10), MetricRow("plan", "p_value", float("nan"))])
    model_metrics.write_metrics(cfg, DAY, "3", "estimate", [MetricRow("score", "roc_auc", 0.8)])
    model_metrics.write_metrics(cfg, DAY, "3", "drift",
                                [MetricRow("plan", "psi", 0.2, rows_used=12)])
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


# ---------------------------------------------------------------- at-least-once delivery


def _deliveries(cfg: Config) -> list[tuple[str, str, int, bool, str | None]]:
    """(subject, target, attempts, delivered?, last error) of every delivery record."""
    return [(d["subject"], d["target"], d["attempts"], d["delivered_at"] is not None,
             d["last_error"]) for d in alerts.deliveries(cfg)]


def test_a_webhook_down_on_one_run_gets_the_alert_on_the_next_exactly_once(
        store_url: str, tmp_path: Path, receiver: Receiver) -> None:
    cfg = _cfg(tmp_path, store_url, receiver.url)
    drift = Alert(DAY, "drift_psi_max", "plan", "plan: psi 0.31 beyond 0.2", 0.31, 0.2)
    receiver.status = 503
    assert alerts.raise_alerts(cfg, [drift]) == [drift]
    assert receiver.received == []
    assert _deliveries(cfg) == [("plan", "webhook", 1, False,
                                 "HTTPError: HTTP Error 503: Service Unavailable")]
    receiver.status = 204
    assert alerts.raise_alerts(cfg, []) == []  # the next run, with nothing new
    (payload,) = receiver.received
    assert (payload["rule"], payload["subject"]) == ("drift_psi_max", "plan")
    assert payload["id"] == receiver.sent[0]["id"] == alerts.alert_id(cfg, drift)
    assert payload == receiver.sent[0]  # the same payload on every attempt
    assert _deliveries(cfg) == [("plan", "webhook", 2, True, None)]
    assert alerts.raise_alerts(cfg, [drift]) == []  # a third run: nothing sent again
    assert len(receiver.sent) == 2 and len(receiver.received) == 1


def test_a_mail_server_failing_then_working_gets_the_alerts_in_one_e_mail_once(
        store_url: str, tmp_path: Path, mailbox: Mailbox,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tmp_path, store_url).with_overrides({
        "monitor.email_to": ["ops@example.com"], "monitor.smtp_conn_id": mailbox.conn_id})
    variable = f"AIRFLOW_CONN_{mailbox.conn_id.upper()}"
    working = os.environ[variable]
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(variable, json.dumps({**json.loads(working), "port": port}))
    drift = Alert(DAY, "drift_psi_max", "device", "device: psi 0.41", 0.41, 0.2)
    assert alerts.raise_alerts(cfg, [drift]) == [drift]
    ((subject, target, attempts, delivered, error),) = _deliveries(cfg)
    assert (subject, target, attempts, delivered) == ("device", "email", 1, False)
    assert error and "refused" in error.lower()
    monkeypatch.setenv(variable, working)
    bias = Alert(DAY, "prediction_bias", "score", "bias +0.08", 0.08, 0.05)
    assert alerts.raise_alerts(cfg, [bias]) == [bias]  # the next run: the old one, the new one
    assert alerts.raise_alerts(cfg, [drift, bias]) == []  # and a third: nothing to send
    (mail,) = mailbox.messages
    assert mail["Subject"] == alerts.email_subject(cfg, [drift, bias])
    assert _deliveries(cfg) == [("device", "email", 2, True, None),
                                ("score", "email", 1, True, None)]


def test_a_delivery_that_keeps_failing_is_tried_a_bounded_number_of_times_and_leaks_no_token(
        store_url: str, tmp_path: Path, receiver: Receiver, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    # a space in the query: http.client refuses it with an error that quotes the URL
    cfg = _cfg(tmp_path, store_url, f"{receiver.url}?token=s3cret&x=a b").with_overrides(
        {"monitor.delivery_max_attempts": 2})
    alert = Alert(DAY, "live_roc_auc_below_min", "score", "low", 0.55, 0.6, "critical")
    with caplog.at_level("ERROR", logger="precast.monitoring.alerts"):
        for _ in range(3):
            alerts.raise_alerts(cfg, [alert])
    ((subject, target, attempts, delivered, error),) = _deliveries(cfg)
    assert (subject, target, attempts, delivered) == ("score", "webhook", 2, False)
    assert error and error.startswith("InvalidURL") and "token=***" in error
    assert "s3cret" not in repr(alerts.deliveries(cfg)) and "s3cret" not in caplog.text
    assert receiver.sent == []
    (undelivered,) = alerts.undelivered(cfg)
    assert (undelivered["target"], undelivered["alerts"], undelivered["attempts"]) == (
        "webhook", 1, 2)
    console.print_undelivered(cfg)
    assert capsys.readouterr().out.startswith(
        "undelivered alerts (webhook): 1, up to 2 of 2 attempts; last error: InvalidURL")


def test_an_undelivered_alert_older_than_the_retry_window_is_given_up(
        tmp_path: Path, receiver: Receiver) -> None:
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'p.db'}", receiver.url)
    receiver.status = 500
    alerts.raise_alerts(cfg, [Alert(DAY, "drift_psi_max", "plan", "plan")])
    engine = store.make_engine(cfg.predictions_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alerts SET raised_at = '2020-01-01 00:00:00+00:00'"))
    finally:
        engine.dispose()
    receiver.status = 204
    alerts.raise_alerts(cfg, [])
    assert receiver.received == [] and len(receiver.sent) == 1


@pytest.mark.parametrize("first_delivery", ["webhook down", "killed before delivery"])
def test_a_monitor_retried_after_its_alerts_were_committed_ends_as_one_clean_run(
        store_url: str, tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        first_delivery: str) -> None:
    raised = [Alert(DAY, "drift_psi_max", "plan", "plan", 0.31, 0.2),
              Alert(DAY, "prediction_bias", "score", "bias", 0.08, 0.05)]
    clean = _cfg(tmp_path, f"sqlite:///{tmp_path / 'clean.db'}", receiver.url)
    assert alerts.raise_alerts(clean, raised) == raised
    clean_sent = [(p["id"], p["rule"], p["subject"]) for p in receiver.received]
    receiver.received.clear()

    cfg = _cfg(tmp_path, store_url, receiver.url)
    if first_delivery == "webhook down":
        receiver.status = 503
        assert alerts.raise_alerts(cfg, raised) == raised
        receiver.status = 204
    else:
        with monkeypatch.context() as patched:  # the process dies right after the commit
            patched.setattr(alerts, "_post", lambda *_: (_ for _ in ()).throw(SystemExit(1)))
            with pytest.raises(SystemExit):
                alerts.raise_alerts(cfg, raised)
    assert alerts.raise_alerts(cfg, raised) == []  # the retried monitor: same snapshot
    assert alerts.raise_alerts(cfg, raised) == []  # and once more: nothing further
    assert [{**a, "snapshot_date": str(a["snapshot_date"])} for a in alerts.alerts_of(cfg)] == [
        {**a, "snapshot_date": str(a["snapshot_date"])} for a in alerts.alerts_of(clean)]
    assert [(p["id"], p["rule"], p["subject"]) for p in receiver.received] == clean_sent
    assert [d[:2] + d[3:] for d in _deliveries(cfg)] == [d[:2] + d[3:]
                                                         for d in _deliveries(clean)]


def test_a_failed_delivery_records_no_secret_from_an_environment_variable_in_the_url(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("PRECAST_TEST_HOOK_PATH", "T0/B1/pathS3cret")
    cfg = _cfg(tmp_path, f"sqlite:///{tmp_path / 'p.db'}",
               receiver.url + "/${PRECAST_TEST_HOOK_PATH} x")  # the space: refused, quoted
    with caplog.at_level("ERROR", logger="precast.monitoring.alerts"):
        alerts.raise_alerts(cfg, [Alert(DAY, "drift_psi_max", "plan", "plan")])
    ((*_, error),) = _deliveries(cfg)
    assert error and error.startswith("InvalidURL") and "/hook/*** x" in error
    assert "pathS3cret" not in repr(alerts.deliveries(cfg)) and "pathS3cret" not in caplog.text


def test_a_failed_dag_run_also_delivers_the_alerts_a_target_did_not_accept_before(
        tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from precast import runtime
    from precast.orchestration import tasks, use_cases

    monkeypatch.setattr(runtime, "prepare_environment", lambda: None)  # no umask, no env
    config = tmp_path / "precast.yaml"
    config.write_text(f"name: churn\nhome: {tmp_path / 'home'}\nstores:\n  predictions_url: "
                      f"sqlite:///{tmp_path / 'p.db'}\nmonitor:\n  webhook_url: {receiver.url}\n")
    uc = use_cases.UseCase("churn", config, {}, {}, "")
    receiver.status = 503
    alerts.raise_alerts(uc.load(), [Alert(DAY, "drift_psi_max", "plan", "plan")])
    receiver.status = 204
    tasks.record_failure(uc, cast(Context, {"reason": "boom", "logical_date": None}))
    assert [(p["rule"], p["subject"]) for p in receiver.received] == [
        ("drift_psi_max", "plan"), ("dag_run_failed", "unknown DAG")]
