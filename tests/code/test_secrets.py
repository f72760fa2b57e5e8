"""Secrets never leave: a password planted in every connection and URL of a use case (its
PostgreSQL store, its MLflow tracking server, an Airflow connection, the webhook's token)
is found after a chain with a failure in no file under PRECAST_HOME, no log line, no
console output, no store row, no alert and no webhook body.

Needs PostgreSQL (skipped without it, like every store test) and starts a real
`mlflow server`.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import sqlalchemy as sa
from airflow.sdk import Context

from precast.cli.main import main
from precast.config import Config
from precast.model import registry
from precast.monitoring import alerts
from precast.orchestration import connections, tasks, use_cases
from tests.helpers import Mailbox, mlflow_server, pg_database, register_two

PLANTED = f"Pl4nted-s3cret-{uuid.uuid4().hex[:10]}"
DAY = date(2026, 3, 1)


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[bytes]]]:
    """A webhook receiver on a free port: its URL and the raw bodies it got (its URL's
    token is the receiver's own: it is not looked for in the request line)."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


@pytest.fixture
def planted_store() -> Iterator[str]:
    """A PostgreSQL database and a login role whose password is PLANTED (the test server
    trusts local logins, so the password only travels); the store URL with it."""
    with pg_database("precast_secrets") as admin_url:
        role = f"planted_{uuid.uuid4().hex[:8]}"
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        database = admin_url.rsplit("/", 1)[1]
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PLANTED}'")
            conn.exec_driver_sql(f'GRANT CREATE ON DATABASE "{database}" TO "{role}"')
        try:
            yield admin_url.replace("postgres@", f"{role}:{PLANTED}@", 1)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                conn.exec_driver_sql(f'DROP ROLE "{role}"')
            admin.dispose()


def _store_text(url: str) -> str:
    """Every row of every table of the store, as text."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            return "\n".join(
                repr(conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"')).all())
                for schema in inspector.get_schema_names() if schema != "information_schema"
                for table in inspector.get_table_names(schema=schema))
    finally:
        engine.dispose()


def test_a_planted_password_reaches_no_file_log_alert_or_webhook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str], planted_store: str,
        webhook: tuple[str, list[bytes]], mailbox: Mailbox) -> None:
    hook_url, bodies = webhook
    home = tmp_path / "home"
    config = tmp_path / "precast.yaml"
    config.write_text("name: churn\nmonitor: {email_to: [ops@example.com], smtp_conn_id: "
                      f"{mailbox.conn_id}}}\n")
    caplog.set_level(logging.DEBUG)
    with mlflow_server(home / "server-mlflow.db", home / "server-artifacts",
                       tmp_path / "mlflow-server.log") as server:
        tracking = server.url.replace("http://", f"http://planted:{PLANTED}@")
        store = make_url_json(planted_store)
        for key, value in {
                "PRECAST_HOME": str(home), "PRECAST_CONFIG": str(config),
                "PRECAST_MONITOR__WEBHOOK_URL": f"{hook_url}?token={PLANTED}",
                "AIRFLOW_CONN_PRECAST_PREDICTIONS": store,
                "AIRFLOW_CONN_PRECAST_MLFLOW": tracking}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.chdir(tmp_path)
        uc = use_cases.UseCase("churn", config, {}, {
            "stores.predictions_url": "precast_predictions",
            "stores.mlflow_tracking_uri": "precast_mlflow"}, "")
        cfg = uc.load(connections.airflow_overrides(uc))
        assert PLANTED in cfg.predictions_url and PLANTED in cfg.tracking_uri
        monkeypatch.setenv("PRECAST_STORES__PREDICTIONS_URL", cfg.predictions_url)
        monkeypatch.setenv("PRECAST_STORES__MLFLOW_TRACKING_URI", tracking)

        register_two(cfg)  # the chain: the CLI's champion changes, status, a failure
        assert main(["promote", "--force", "--reason", "reviewed", "--by", "ana"]) == 0
        assert main(["promote", "--pin", "--reason", "freeze", "--by", "ana"]) == 0
        assert main(["promote", "--force", "--version", "404", "--reason", "x"]) == 3
        assert main(["champions"]) == 0
        assert main(["-v", "status"]) == 0
        server.stop()  # the tracking server goes away mid-run
        assert main(["-v", "run", "gate", "--date", DAY.isoformat()]) == 1
        context = {"params": {}, "logical_date": datetime(2026, 3, 1, tzinfo=UTC),
                   "dag_run": SimpleNamespace(dag_id="churn__training", run_id="manual__1",
                                              run_type="manual")}
        with pytest.raises(registry.RegistryUnavailableError) as failed:
            tasks._execute("gate", uc, cast(Context, context))  # the Airflow task's path
        tasks.record_failure(uc, cast(Context, {**context, "exception": failed.value}))

    out, err = capfd.readouterr()
    assert "RegistryUnavailableError" in err and alerts.alerts_of(cfg)  # it did fail, alert
    assert bodies and all(b"dag_run_failed" in body for body in bodies) and mailbox.messages
    leaks = [str(path) for path in home.rglob("*")
             if path.is_file() and PLANTED.encode() in path.read_bytes()]
    assert leaks == [], f"the planted password is in {leaks}"
    seen = {"log records": caplog.text, "stdout": out, "stderr": err,
            "the mlflow server's log": (tmp_path / "mlflow-server.log").read_text(),
            "the store": _store_text(planted_store.replace(f":{PLANTED}@", "@", 1)),
            "alerts": json.dumps(alerts.alerts_of(cfg), default=str),
            "webhook bodies": repr(bodies),
            "e-mails": "\n".join(str(part.get_payload(decode=True) or "") + str(part.items())
                                  for mail in mailbox.messages for part in mail.walk())}
    assert "could not answer" in seen["e-mails"] and "could not answer" in seen["webhook bodies"]
    assert [name for name, text in seen.items() if PLANTED in text] == [], [
        line for text in seen.values() for line in text.splitlines() if PLANTED in line]


def make_url_json(url: str) -> str:
    """An Airflow connection (JSON form) for a PostgreSQL URL."""
    parsed = sa.make_url(url)
    return json.dumps({"conn_type": "postgres", "host": parsed.host, "port": parsed.port,
                       "login": parsed.username, "password": parsed.password,
                       "schema": parsed.database})


def test_mlflow_tags_texts_and_artifact_uris_never_carry_a_password(tmp_path: Path) -> None:
    """What precast writes to MLflow (version tags, logged texts such as the gate's decision
    and the model card, the artifact URI it hands on) is redacted on the way in."""
    cfg = Config(home=tmp_path / "home")
    mlflow_client = registry.client(cfg)
    run = mlflow_client.create_run(mlflow_client.get_experiment_by_name(
        cfg.model.experiment).experiment_id)
    mlflow_client.create_registered_model(cfg.model.name)
    version = mlflow_client.create_model_version(cfg.model.name, "file:///nowhere",
                                                 run.info.run_id).version
    url = f"postgresql+psycopg://app:{PLANTED}@db/x?sslpassword={PLANTED}"
    registry.tag_version(cfg, str(version), {"gate.rules_failed": f"store {url} refused"})
    folder = registry.log_artifacts(cfg, run.info.run_id, "gate",
                                    {"decision.json": json.dumps({"store": url})}, [])
    ref = registry.version(cfg, str(version))
    assert ref is not None
    assert ref.tags["gate.rules_failed"] == (
        "store postgresql+psycopg://app:***@db/x?sslpassword=*** refused")
    assert PLANTED not in folder
    assert [str(p) for p in cfg.home.rglob("*")
            if p.is_file() and PLANTED.encode() in p.read_bytes()] == []
