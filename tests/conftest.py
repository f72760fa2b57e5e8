"""Shared fixtures: a real SparkSession, a per-test config under tmp_path, PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from precast.runtime import prepare_environment

prepare_environment()
REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", str(REPO / ".precast" / "airflow"))

from precast.config import Config, load_config  # noqa: E402

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


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    """Default config with PRECAST_HOME in a fresh temporary folder."""
    return load_config(environ={"PRECAST_HOME": str(tmp_path / "home")})


def _pg_required() -> bool:
    return os.environ.get("PRECAST_REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards.

    Skipped with a reason when no server answers, unless PRECAST_REQUIRE_POSTGRES=1 (CI).
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
    name = f"precast_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
