"""Shared fixtures: a real SparkSession, per-test configs, PostgreSQL, a small generated world."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from precast import demo_data
from precast.config import Config, load_config
from precast.runtime import prepare_environment

prepare_environment()
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".precast" / "airflow-test"))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))

PG_ADMIN_URL = os.environ.get(
    "PRECAST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def spark():
    """One real local SparkSession for the whole test session."""
    from precast.spark import spark_session

    cfg = load_config(environ={})
    conf = {**cfg.engines.spark.conf, "spark.sql.shuffle.partitions": "2"}
    session = spark_session(
        cfg.with_overrides({"engines.spark.master": "local[2]", "engines.spark.conf": conf})
    )
    yield session
    session.stop()


@dataclass
class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and the Airflow connection that reaches it."""

    conn_id: str
    messages: list[Any]  # email.message.Message, in arrival order


@pytest.fixture
def mailbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Mailbox]:
    import email
    import socket

    from aiosmtpd.controller import Controller

    box = Mailbox("precast_test_smtp", [])

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(email.message_from_bytes(envelope.content))
            return "250 OK"

    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv(f"AIRFLOW_CONN_{box.conn_id.upper()}", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"from_email": "precast@example.com", "disable_tls": True,
                  "disable_ssl": True, "retry_limit": 0, "timeout": 10}}))
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """Default config with PRECAST_HOME in a fresh temporary folder."""
    return load_config(environ={"PRECAST_HOME": str(tmp_path / "home")})


def _pg_required() -> bool:
    return os.environ.get("PRECAST_TEST_REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}


@contextmanager
def pg_database(prefix: str = "precast_test") -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; its SQLAlchemy URL.

    Skips with a reason when no server answers, unless PRECAST_TEST_REQUIRE_POSTGRES=1 (CI).
    """
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if _pg_required():
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc.orig}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (see pg_database)."""
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty prediction store: a SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'store' / 'predictions.db'}"


# For tests that start a Spark JVM per step (Airflow tasks, spark-submit) on tiny data: a
# client JIT and a serial GC cut each JVM's CPU by about a third on 2 cores (not a
# production setting: it slows big jobs).
FAST_START_SPARK = {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "1g",
                    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"}
JIT_FLAGS = FAST_START_SPARK["spark.driver.extraJavaOptions"]
START = date(2026, 1, 1)
DAYS = 36
RUN_DATE = START + timedelta(days=DAYS - 1)
SMALL = {
    "features": {"short_window_days": 7, "long_window_days": 14, "label_horizon_days": 7,
                 "snapshot_interval_days": 7, "train_snapshots": 2},
    "train": {"num_boost_round": 150, "early_stopping_rounds": 15},
    "gate": {"tolerance": 0.01, "floors": {"roc_auc": 0.6}},
    "engines": {"spark": {"master": "local[2]"}},
    "demo": {"users": 1500, "days": DAYS, "seed": 11, "start_date": START.isoformat(),
             "corrupt_fraction": 0.003},
}


@dataclass(frozen=True)
class World:
    cfg: Config
    config_path: Path
    run_date: date


def make_world(root: Path, overrides: dict[str, Any] | None = None) -> World:
    """Write a small config under `root` and generate its raw logs."""
    data = {**SMALL, **(overrides or {}), "home": str(root / "home")}
    path = root / "precast.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, environ={})
    d = cfg.demo
    demo_data.generate(cfg.lake_root, users=d.users, days=d.days, seed=d.seed,
                       start_date=d.start_date, corrupt_fraction=d.corrupt_fraction,
                       drift_day=d.drift_day)
    return World(cfg, path, RUN_DATE)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, spark) -> World:
    """Generated logs with training and predict already run once for RUN_DATE."""
    from precast import pipeline

    w = make_world(tmp_path_factory.mktemp("world"))
    pipeline.run_chain(w.cfg, "training", w.run_date)
    pipeline.run_chain(w.cfg, "predict", w.run_date)
    return w


def pytest_unconfigure(config: pytest.Config) -> None:
    """Free boosters still cached by Beam's shared handles while XGBoost's library is loaded."""
    import gc

    gc.collect()
