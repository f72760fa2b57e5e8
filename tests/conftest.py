"""Shared fixtures: a real SparkSession, per-test configs, PostgreSQL, one generated world.

Every test process (the main one, or each pytest-xdist worker) gets an Airflow home and
metadata database of its own in a temporary folder, so runs never share Airflow state:
not with each other, not with an earlier run.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from precast.config import Config, load_config
from precast.runtime import prepare_environment
from tests.helpers import (
    CHURN,
    FAST_SPARK_SQL,
    JIT_FLAGS,
    REPO,
    Mailbox,
    World,
    copy_world,
    make_world,
    mlflow_runs_resolved_afresh,
    pg_database,
)

prepare_environment()
AIRFLOW_TEST_HOME = Path(tempfile.mkdtemp(
    prefix=f"precast-airflow-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"))
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_TEST_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))


@pytest.fixture(scope="session")
def spark():
    """One real local SparkSession for the whole test session (tiny-data settings)."""
    from precast.engines.spark import spark_session

    cfg = load_config(CHURN, environ={})
    conf = {**cfg.engines.spark.conf, **FAST_SPARK_SQL, "spark.driver.extraJavaOptions": JIT_FLAGS}
    session = spark_session(
        cfg.with_overrides({"engines.spark.master": "local[2]", "engines.spark.conf": conf})
    )
    yield session
    session.stop()


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
    return load_config(CHURN, environ={"PRECAST_HOME": str(tmp_path / "home")})


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


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, spark) -> World:
    """Generated logs with training and predict already run once for RUN_DATE.

    Shared by the whole session, so read-only: a test that changes anything in it asks for
    `own_world` instead.
    """
    from precast import pipeline

    w = make_world(tmp_path_factory.mktemp("world"))
    pipeline.run_chain(w.cfg, "training", w.run_date)
    pipeline.run_chain(w.cfg, "predict", w.run_date)
    return w


@pytest.fixture
def own_world(world: World, tmp_path: Path) -> Iterator[World]:
    """A private copy of the session's world (lake, registry, store, records) to change."""
    with mlflow_runs_resolved_afresh():
        yield copy_world(world, tmp_path / "own-world")


WORLD_FIXTURES = {"world", "own_world", "trained", "own_trained"}
# Modules whose tests use the session's world: under xdist they run on one worker, so the
# world is built once (checked at collection below).
WORLD_MODULES = ("tests/integration/test_end_to_end.py", "tests/integration/test_monitor.py",
                 "tests/integration/test_backfill.py", "tests/integration/test_ui.py",
                 "tests/model/")
# Modules whose tests are independent and long: each test is a unit of its own.
ONE_UNIT_PER_TEST = ("tests/integration/test_drift_scenario.py",)


def work_unit(nodeid: str) -> str:
    """What pytest-xdist hands to one worker as a whole: the world's tests together, a
    long scenario test alone, otherwise a module (module-scoped fixtures stay together)."""
    module = nodeid.split("::")[0]
    if module.startswith(WORLD_MODULES):
        return "world"
    return nodeid if module.startswith(ONE_UNIT_PER_TEST) else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Distribute by work_unit (xdist's `loadgroup` markers do not reach its scheduler under
    pytest 9, which ignores the node id suffix they set)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest work units (`slow`, longest first) come first, then the world's, then
    the rest, each in the random order pytest-randomly gave it: two workers start the long
    ones at once, and the short ones even out the end. A test of the world outside
    WORLD_MODULES is an error."""
    for item in items:
        uses_world = set(getattr(item, "fixturenames", ())) & WORLD_FIXTURES
        if uses_world and work_unit(item.nodeid) != "world":
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(uses_world)}: add its module "
                                    "to WORLD_MODULES in tests/conftest.py")
    def order(item: pytest.Item) -> tuple[int, float]:
        slow = item.get_closest_marker("slow")
        if slow:
            return (0, -slow.kwargs.get("minutes", 1))
        return (1 if work_unit(item.nodeid) == "world" else 2, 0)

    items.sort(key=order)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Free boosters still cached by Beam's shared handles while XGBoost's library is loaded;
    remove this process's Airflow home."""
    import gc

    gc.collect()
    shutil.rmtree(AIRFLOW_TEST_HOME, ignore_errors=True)
