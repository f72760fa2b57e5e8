"""Orchestration units: connections → config, the spark-submit command, data_only, exit 3."""

from __future__ import annotations

import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import cast

import pytest
from airflow.sdk import Connection, Context
from airflow.sdk.exceptions import AirflowSkipException
from sqlalchemy.engine import make_url

from precast.cli.main import main
from precast.config import Config, load_config, redact_url
from precast.errors import EXIT_NOT_RETRYABLE
from precast.orchestration import connections, submit, tasks, use_cases
from precast.orchestration import params as orchestration_params
from precast.use_case import USE_CASES_ENV
from tests.helpers import CHURN

PASSWORD = "p@ss:w/rd%?#&+ é"  # every character a URL cares about
JOBS = Path(__file__).resolve().parents[2] / "jobs"
DAY = date(2026, 2, 5)


def _conn(**kwargs: object) -> Connection:
    return Connection(conn_id="c", **kwargs)  # type: ignore[arg-type]


def test_postgres_connection_becomes_an_escaped_psycopg_url() -> None:
    conn = _conn(conn_type="postgres", host="db.internal", port=5433, login="app@team",
                 password=PASSWORD, schema="predictions")
    url = make_url(connections.connection_value("stores.predictions_url", conn))
    assert url.drivername == "postgresql+psycopg"
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "app@team", PASSWORD, "db.internal", 5433, "predictions")


def test_postgres_connection_without_credentials_or_port() -> None:
    conn = _conn(conn_type="postgresql", host="127.0.0.1", schema="precast")
    assert connections.connection_value("stores.predictions_url", conn) == (
        "postgresql+psycopg://127.0.0.1/precast")


def test_sqlite_connection_is_a_file_url() -> None:
    conn = _conn(conn_type="sqlite", host="/data/precast/predictions.db")
    assert connections.connection_value("stores.predictions_url", conn) == (
        "sqlite:////data/precast/predictions.db")


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"conn_type": "http", "host": "mlflow.internal", "port": 5000}, "http://mlflow.internal:5000"),
    ({"conn_type": "https", "host": "ml.example.com", "schema": "mlflow"},
     "https://ml.example.com/mlflow"),
    ({"conn_type": "http", "host": "ml.example.com", "schema": "https"},  # HTTP provider style
     "https://ml.example.com"),
    ({"conn_type": "http", "host": "https://ml.example.com/", "port": 8443},
     "https://ml.example.com"),
    ({"conn_type": "http", "host": "h", "login": "me", "password": "a@b:c"},
     "http://me:a%40b%3Ac@h"),
])
def test_http_connection_becomes_the_tracking_uri(kwargs: dict[str, object],
                                                  expected: str) -> None:
    assert connections.connection_value("stores.mlflow_tracking_uri", _conn(**kwargs)) == expected


@pytest.mark.parametrize(("host", "port", "expected"), [
    ("spark://127.0.0.1", 7077, "spark://127.0.0.1:7077"),
    ("spark-master", 7077, "spark://spark-master:7077"),
    ("yarn", None, "yarn"),
    ("local[*]", None, "local[*]"),
    ("k8s://https://k8s.example.com:443", None, "k8s://https://k8s.example.com:443"),
])
def test_spark_connection_follows_airflows_convention(host: str, port: int | None,
                                                      expected: str) -> None:
    conn = _conn(conn_type="spark", host=host, port=port)
    assert connections.connection_value("engines.spark.master", conn) == expected


def test_extra_url_wins_over_the_fields() -> None:
    conn = _conn(conn_type="postgres", host="ignored", login="x", password="y",
                 extra=json.dumps({"url": "postgresql+psycopg://u@h/db?sslmode=require"}))
    assert connections.connection_value("stores.predictions_url", conn) == (
        "postgresql+psycopg://u@h/db?sslmode=require")


def test_unsupported_connection_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"conn_type 'mysql' cannot give stores.predictions_url"):
        connections.connection_value("stores.predictions_url", _conn(conn_type="mysql", host="h"))
    with pytest.raises(ValueError, match="needs a host"):
        connections.connection_value("engines.spark.master", _conn(conn_type="spark"))


def test_one_redaction_hides_passwords_and_tokens_in_any_text() -> None:
    from precast.config import redact_text

    assert redact_url("http://h/api?password=hunter2&x=1") == "http://h/api?password=***&x=1"
    assert redact_url("https://h/hook?token=abc") == "https://h/hook?token=***"
    assert redact_url("postgresql+psycopg://u:p%40ss@h/db?options=-c+search_path%3Dshop") == (
        "postgresql+psycopg://u:***@h/db?options=-c+search_path%3Dshop")
    text = ("connection to postgresql://app:hunter2@db/x failed; conninfo host=db "
            "password=hunter2 user=app; see https://x/?api_key=hunter2")
    assert "hunter2" not in redact_text(text)
    assert redact_text(text) == ("connection to postgresql://app:***@db/x failed; conninfo "
                                 "host=db password=*** user=app; see https://x/?api_key=***")
    assert redact_text("nothing secret: sqlite:////tmp/p.db") == (
        "nothing secret: sqlite:////tmp/p.db")
    assert redact_text("sslpassword=a client_secret=b X-Amz-Signature=c max_tokens=4") == (
        "sslpassword=*** client_secret=*** X-Amz-Signature=*** max_tokens=4")


def test_a_library_that_logs_a_url_with_its_password_leaks_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    """The entry points' logging redacts every record as it is made, traceback included,
    whichever logger made it and whichever handler writes it."""
    import io

    from precast.runtime import install_redaction

    install_redaction()
    install_redaction()  # idempotent: one redaction, however many entry points call it
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("urllib3.connectionpool").warning(
                "connecting to %s", "postgresql://app:Lib-s3cret@db/x")
            try:
                raise ConnectionError("http://ml:Lib-s3cret@mlflow:5000/?token=Lib-s3cret")
            except ConnectionError:
                logging.getLogger("mlflow.utils.rest_utils").exception("request %d failed", 7)
            logging.getLogger("a_library").warning("100 rows done; a=%d", 1)  # untouched, cheaply
    finally:
        logging.getLogger().removeHandler(handler)
    assert "Lib-s3cret" not in caplog.text and "Lib-s3cret" not in stream.getvalue()
    assert "connecting to postgresql://app:***@db/x" in stream.getvalue()
    assert "ConnectionError: http://ml:***@mlflow:5000/?token=***" in caplog.text
    assert "request 7 failed" in caplog.text
    assert caplog.records[-1].getMessage() == "100 rows done; a=1"


def test_redact_hides_only_the_password() -> None:
    url = connections.postgres_url(
        _conn(conn_type="postgres", host="h", login="u", password=PASSWORD))
    assert redact_url(url) == "postgresql+psycopg://u:***@h"
    assert redact_url("sqlite:////tmp/p.db") == "sqlite:////tmp/p.db"
    assert redact_url("http://u@h:5000") == "http://u@h:5000"


def use_case(path: Path) -> use_cases.UseCase:
    (found,) = use_cases.use_cases({USE_CASES_ENV: str(path)})
    return found


CHURN_UC = use_case(CHURN.parent)


@pytest.fixture
def no_airflow_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for conn_id in CHURN_UC.connections.values():
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    monkeypatch.delenv(f"AIRFLOW_VAR_{CHURN_UC.lake_variable.upper()}", raising=False)
    return monkeypatch


def test_no_connections_no_overrides(no_airflow_settings: pytest.MonkeyPatch) -> None:
    assert connections.airflow_overrides(CHURN_UC) == {}


def test_use_cases_come_from_their_folders_with_their_own_dags_and_assets(
        tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "precast.yaml").write_text(
        "name: shop\nairflow: {schedules: {training: '0 3 * * 1'},"
        " connections: {predictions: shop_store}}\n")
    churn, other = use_cases.use_cases({USE_CASES_ENV: f"{CHURN.parent}:{shop / 'precast.yaml'}"})
    assert (churn.name, churn.config, other.name) == ("churn", CHURN.resolve(), "shop")
    assert other.dag_id("predict") == "shop__predict"
    assert other.champion_asset.name == "shop__champion"
    assert other.champion_asset.uri != churn.champion_asset.uri
    assert other.schedules == {"training": "0 3 * * 1", "predict": "0 6 * * *"}
    assert other.connections["stores.predictions_url"] == "shop_store"
    assert other.connections["stores.mlflow_tracking_uri"] == "precast_mlflow"  # shared
    assert churn.connections["stores.predictions_url"] == "precast_predictions"


def test_two_use_cases_with_one_name_or_a_missing_file_are_refused(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "precast.yaml").write_text("name: churn\n")
    with pytest.raises(ValueError, match="are both named 'churn'"):
        use_cases.use_cases({USE_CASES_ENV: f"{CHURN.parent}:{copy}"})
    (copy / "precast.yaml").write_text(
        f"name: other\nstores: {{predictions_url: 'sqlite:///{tmp_path}/p.db'}}\n")
    (tmp_path / "precast.yaml").write_text(
        f"name: third\nstores: {{predictions_url: 'sqlite:///{tmp_path}/p.db'}}\n")
    with pytest.raises(ValueError, match="share the SQLite store"):
        use_cases.use_cases({USE_CASES_ENV: f"{copy}:{tmp_path}"})
    with pytest.raises(FileNotFoundError, match="PRECAST_USE_CASES names no config file"):
        use_cases.use_cases({USE_CASES_ENV: str(tmp_path / "nowhere")})


def test_airflow_conn_env_vars_round_trip_into_config(
        no_airflow_settings: pytest.MonkeyPatch, cfg: Config,
        caplog: pytest.LogCaptureFixture) -> None:
    env = no_airflow_settings
    env.setenv("AIRFLOW_CONN_PRECAST_PREDICTIONS", json.dumps({
        "conn_type": "postgres", "host": "db", "port": 5432, "login": "app",
        "password": PASSWORD, "schema": "precast"}))
    env.setenv("AIRFLOW_CONN_PRECAST_SPARK", "spark://spark-master:7077")  # URI form
    env.setenv("AIRFLOW_CONN_PRECAST_MLFLOW", "http://mlflow:5000")
    env.setenv("AIRFLOW_VAR_PRECAST_LAKE", "s3://bucket/lake")
    with caplog.at_level(logging.INFO, logger="precast.orchestration.connections"):
        overrides = connections.airflow_overrides(CHURN_UC)
    out = cfg.with_overrides(overrides)
    assert make_url(out.predictions_url).password == PASSWORD
    assert make_url(out.predictions_url).database == "precast"
    assert out.engines.spark.master == "spark://spark-master:7077"
    assert out.tracking_uri == "http://mlflow:5000"
    assert out.lake_root == "s3://bucket/lake/churn"  # the use case's prefix
    assert "Airflow connection precast_predictions" in caplog.text
    assert "Airflow variable precast_lake" in caplog.text
    assert PASSWORD not in caplog.text and "p%40ss" not in caplog.text


def test_a_bad_connection_fails_the_task_without_retries(
        no_airflow_settings: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    no_airflow_settings.setenv("AIRFLOW_CONN_PRECAST_PREDICTIONS", "mysql://h/db")
    with pytest.raises(AirflowFailException, match="precast_predictions: conn_type 'mysql'"):
        connections.airflow_overrides(CHURN_UC)


def test_only_spark_steps_on_a_cluster_master_are_submitted(cfg: Config) -> None:
    cluster = cfg.with_overrides({"engines.spark.master": "spark://h:7077"})
    assert submit.on_cluster(cluster, "extract") and submit.on_cluster(cluster, "validate_events")
    assert not submit.on_cluster(cluster, "train")
    assert not submit.on_cluster(cluster, "validate_features")  # pandas
    assert not submit.on_cluster(cfg.with_overrides({"engines.spark.master": "local[2]"}),
                               "extract")


def test_every_spark_job_file_exists() -> None:
    for step, (job, *_) in submit.SPARK_JOBS.items():
        text = (JOBS / job).read_text()
        assert "spark-submit jobs/" in text and "main([" in text, step


def test_submit_command_names_the_app_and_carries_the_conf(cfg: Config) -> None:
    cluster = cfg.with_overrides({"engines.spark.master": "spark://h:7077"})
    cmd = submit.submit_command(cluster, "validate_events", DAY, JOBS)
    assert Path(cmd[0]).name == "spark-submit"
    assert cmd[1:5] == ["--master", "spark://h:7077", "--name", "precast-validate_events"]
    assert cmd[-5:] == [str(JOBS / "validate.py"), "--date", "2026-02-05", "--dataset", "events"]
    confs = {cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--conf"}
    assert f"spark.pyspark.python={sys.executable}" in confs
    assert "spark.sql.session.timeZone=UTC" in confs


def test_a_spark_submit_line_never_logs_or_raises_a_secret(
        cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Secret confs (by key) and URL passwords are `***` in the logged command, the job's
    echoed lines and the error; the job itself still gets them."""
    secret = "Sp4rk-s3cret-91"
    fake = tmp_path / "bin" / "spark-submit"  # a Spark installation whose job says why it
    fake.parent.mkdir()  # failed and exits 1: what reaches the log is what this test judges
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'argv'}\n"
                    f"echo 'precast: run failed: no route to http://u:{secret}@nn:9870'\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))  # how a user names their Spark
    cluster = cfg.with_overrides({"engines.spark.master": f"spark://u:{secret}@h:7077",
                                  "engines.spark.conf": {
                                      "spark.hadoop.fs.s3a.secret.key": secret,
                                      "spark.ssl.keyStorePassword": secret,
                                      "spark.eventLog.dir": f"s3a://k:{secret}@logs/x",
                                      "spark.sql.shuffle.partitions": "2"}})
    with caplog.at_level(logging.DEBUG, logger="precast.orchestration.submit"), \
            pytest.raises(RuntimeError) as failed:
        submit.run_submitted(cluster, "features", DAY, {}, JOBS, CHURN)
    assert secret in (tmp_path / "argv").read_text()  # the job got the real values
    assert secret not in caplog.text and secret not in str(failed.value)
    (line,) = [r.getMessage() for r in caplog.records if "on spark://" in r.getMessage()]
    for conf in ("spark.hadoop.fs.s3a.secret.key=***", "spark.ssl.keyStorePassword=***",
                 "spark.eventLog.dir=s3a://k:***@logs/x", "spark.sql.shuffle.partitions=2"):
        assert f"--conf {conf} " in line
    assert "--master spark://u:***@h:7077" in line
    assert str(failed.value) == "features failed for 2026-02-05: no route to http://u:***@nn:9870"


def test_submitted_job_loads_the_same_config(cfg: Config) -> None:
    overrides = {"stores.predictions_url": connections.postgres_url(_conn(
        conn_type="postgres", host="db", login="u", password=PASSWORD, schema="x")),
        "engines.spark.master": "spark://h:7077", "stores.lake": "yes"}  # "yes": YAML bool
    task_cfg = cfg.with_overrides(overrides)
    env = submit.submit_env(task_cfg, "features", overrides, CHURN)
    job_cfg = load_config(environ={k: v for k, v in env.items() if k.startswith("PRECAST_")})
    assert job_cfg.engines.spark.app_name == "precast-features"
    assert job_cfg.with_overrides({"engines.spark.app_name": "precast"}) == task_cfg
    assert env["PYSPARK_PYTHON"] == sys.executable


@pytest.mark.parametrize(("params", "run_type", "scheduled_runs", "why"), [
    ({"data_only": True}, "manual", "train", "data_only run"),
    ({}, "scheduled", "data_only", "scheduled run with train.scheduled_runs: data_only"),
])
def test_model_steps_are_skipped_by_data_only_runs(
        params: dict[str, object], run_type: str, scheduled_runs: str, why: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "precast.yaml"
    config.write_text(f"home: {tmp_path / 'home'}\ntrain: {{scheduled_runs: {scheduled_runs}}}\n")
    context = {"params": {"snapshot_date": "2026-01-05", **params},
               "dag_run": type("DagRun", (), {"run_type": run_type})()}
    for step in orchestration_params.MODEL_STEPS:
        with pytest.raises(AirflowSkipException, match=f"{step} skipped: {why}"):
            tasks._execute(step, use_case(config), cast(Context, context))


def test_only_data_only_runs_stop_after_the_data_steps() -> None:
    reason = orchestration_params.data_only_reason
    assert reason({}, "scheduled", "train") is None  # the default: the daily run trains
    assert reason({}, "asset_triggered", "data_only") is None  # monitoring asked for it
    assert reason({}, "manual", "data_only") is None  # a person asked for it
    assert reason({"data_only": False}, "scheduled", "data_only") is not None


def test_cli_exits_3_when_retrying_cannot_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               spark) -> None:
    monkeypatch.setenv("PRECAST_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["--use-case", str(CHURN.parent), "run", "features", "--date", "2026-02-05"]
                ) == EXIT_NOT_RETRYABLE
    assert "NotEnoughHistoryError" in capsys.readouterr().err


def test_failure_reason_is_one_line_naming_step_day_and_error() -> None:
    day = date(2026, 2, 6)
    exc = ValueError("extract 2026-02-06: quarantine rate 100.00% exceeds limit\nsecond line")
    assert tasks.one_line_reason("extract", day, exc) == (
        "extract failed for 2026-02-06: ValueError: extract 2026-02-06: quarantine rate "
        "100.00% exceeds limit")
    already = RuntimeError("features failed for 2026-02-06: spark-submit exited 1")
    assert tasks.one_line_reason("features", day, already) == str(already)
    assert tasks.one_line_reason("train", day, KeyError()) == (
        "train failed for 2026-02-06: KeyError")


def test_step_summaries_are_strict_json_for_xcom() -> None:
    from precast.pipeline import to_jsonable

    summary = to_jsonable({"estimate": float("nan"), "psi": [float("inf"), 0.5], "rows": 3})
    assert summary == {"estimate": None, "psi": [None, 0.5], "rows": 3}
    json.dumps(summary, allow_nan=False)  # what Airflow's XCom push needs
