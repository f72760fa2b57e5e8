"""What several test modules share: generated worlds, their copies, PostgreSQL databases,
subprocesses that explain their failures. Fixtures live in the conftest files; the plain
helpers they and the tests use live here (no test module imports another)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import xgboost as xgb
import yaml

from precast.config import Config, load_config
from precast.model import artifact
from precast.steps.train import TrainResult
from precast.use_case import generator_module

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
EXAMPLES = REPO / "examples"
CHURN = EXAMPLES / "churn" / "precast.yaml"  # the churn example's config (its use case folder)
SHOP = EXAMPLES / "shop" / "precast.yaml"  # the shop example's (a regression target)
CHURN_LOGS = generator_module(load_config(CHURN, environ={}))  # examples/churn/generate.py
PG_ADMIN_URL = os.environ.get(
    "PRECAST_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# Spark for tests on tiny data (not production settings: they slow big jobs). A client JIT
# and a serial GC cut a JVM's CPU by about a third on 2 cores; the client JIT's default
# code cache (48 MB) fills within a minute of Spark SQL and then compiling stops, so it
# gets 512 MB. Adaptive query execution re-plans every shuffle: on tiny data that costs
# more than it saves (the features step: 11.5 s -> 9.5 s a day).
JIT_FLAGS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=512m"
FAST_SPARK_SQL = {"spark.sql.shuffle.partitions": "2", "spark.sql.adaptive.enabled": "false"}
# For tests that start a Spark JVM per step (Airflow tasks, spark-submit).
FAST_START_SPARK = {**FAST_SPARK_SQL, "spark.driver.memory": "1g",
                    "spark.driver.extraJavaOptions": JIT_FLAGS}
START = date(2026, 1, 1)
DAYS = 36
RUN_DATE = START + timedelta(days=DAYS - 1)
SMALL: dict[str, Any] = {
    "features": {"short_window_days": 7, "long_window_days": 14, "label_horizon_days": 7,
                 "snapshot_interval_days": 7, "train_snapshots": 2},
    "train": {"num_boost_round": 150, "early_stopping_rounds": 15},
    "gate": {"tolerance": 0.01, "floors": {"roc_auc": 0.6}},
    "engines": {"spark": {"master": "local[2]"}},
    # Data Docs only where a test looks at them (tests/data/test_validate.py does).
    "validation": {"data_docs": False},
    "demo": {"users": 1500, "days": DAYS, "seed": 11, "start_date": START.isoformat(),
             "corrupt_fraction": 0.003},
}


@dataclass(frozen=True)
class World:
    """A generated use case: its config (home under the world's folder) and run date."""

    cfg: Config
    config_path: Path
    run_date: date


@dataclass(frozen=True)
class Trained:
    """The session's model (as registered) and the datasets it was trained and tested on."""

    world: World
    result: TrainResult
    booster: xgb.Booster
    spec: artifact.FeatureSpec
    train_rows: pd.DataFrame
    test_rows: pd.DataFrame


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`base` with `over` laid on top: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = (merged(out[key], value) if isinstance(value, dict)
                    and isinstance(out.get(key), dict) else value)
    return out


def use_case_copy(root: Path, data: dict[str, Any], example: Path = CHURN) -> Path:
    """A use-case folder at `root`: a copy of an example's folder (SQL, suites, generator)
    with `data` laid over its config; the config file's path."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(example.parent, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(example.name, "__pycache__"))
    path = root / example.name
    path.write_text(yaml.safe_dump(merged(yaml.safe_load(example.read_text()), data)))
    return path


def write_world_config(root: Path, data: dict[str, Any]) -> World:
    """Write the churn example with `data` (home under `root`) as the world's use case."""
    path = use_case_copy(root, {**data, "home": str(root / "home")})
    return World(load_config(path, environ={}), path, RUN_DATE)


def make_world(root: Path, overrides: dict[str, Any] | None = None) -> World:
    """Write a small config under `root` and generate its raw logs."""
    world = write_world_config(root, {**SMALL, **(overrides or {})})
    d = world.cfg.demo
    CHURN_LOGS.generate(world.cfg.lake_root, users=d.users, days=d.days, seed=d.seed,
                       start_date=d.start_date, corrupt_fraction=d.corrupt_fraction,
                       drift_day=d.drift_day)
    return world


def copy_world(world: World, root: Path) -> World:
    """An independent copy of `world` under `root`: lake, MLflow store and artifacts,
    prediction store, GX context and run records, with every absolute path moved along.

    MLflow's SQLite store and the run records hold absolute paths (artifact locations,
    report links); they are rewritten so that nothing the copy does reaches the original.
    """
    data = yaml.safe_load(world.config_path.read_text())
    root.mkdir(parents=True, exist_ok=True)
    copy_home(world.cfg.home, root / "home")
    copy = write_world_config(root, {k: v for k, v in data.items() if k != "home"})
    return World(copy.cfg, copy.config_path, world.run_date)


def copy_home(src: Path, dst: Path) -> None:
    """Copy a PRECAST_HOME to `dst`, moving every absolute path inside it along (see
    copy_world); use it within mlflow_runs_resolved_afresh()."""
    old, new = src.resolve(), dst.resolve()
    shutil.copytree(old, new, symlinks=True)
    for path in new.rglob("*"):
        if path.is_file() and not path.is_symlink():
            _move_paths(path, str(old), str(new))


@contextmanager
def mlflow_runs_resolved_afresh() -> Iterator[None]:
    """While a test works on a copied world, resolve every run's artifacts anew.

    A copy keeps the original's run ids, and MLflow caches each run's artifact repository
    by run id for the whole process: without this, an artifact logged to a copy's run would
    land in the original's folder.
    """
    from mlflow.tracking._tracking_service import utils

    utils._artifact_repos_cache.clear()
    try:
        yield
    finally:
        utils._artifact_repos_cache.clear()


TEXT_SUFFIXES = {".json", ".yaml", ".yml", ".md", ".html", ".txt", ""}


def _move_paths(path: Path, old: str, new: str) -> None:
    """Replace `old` by `new` in a SQLite database's text columns or in a text file."""
    with path.open("rb") as head:
        magic = head.read(16)
    if magic == b"SQLite format 3\x00":
        with sqlite3.connect(path) as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for column in conn.execute(f'PRAGMA table_info("{table}")'):
                    name, kind = column[1], (column[2] or "").upper()
                    if any(t in kind for t in ("CHAR", "TEXT", "CLOB")) or kind == "":
                        conn.execute(f'UPDATE "{table}" SET "{name}" = replace("{name}", ?, ?) '
                                     f'WHERE instr("{name}", ?) > 0', (old, new, old))
        conn.close()
    elif path.suffix in TEXT_SUFFIXES or path.name == "MLmodel":
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return
        if old in text:
            path.write_text(text.replace(old, new), encoding="utf-8")


def replace_dataset(path: str, df: pd.DataFrame) -> None:
    """Swap a dataset's Parquet files for `df`, keeping its manifest (tampered data)."""
    for old in Path(path).glob("*.parquet"):
        old.unlink()
    df.to_parquet(f"{path}/part-00000.parquet", index=False)


def run_ok(command: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command; on a non-zero exit fail with its stdout and stderr (never swallowed)."""
    kwargs.setdefault("env", {**os.environ})
    done = subprocess.run(list(command), capture_output=True, text=True, check=False, **kwargs)
    assert done.returncode == 0, (f"{' '.join(command)} exited {done.returncode}\n"
                                  f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    return done


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


@dataclass(frozen=True)
class StoreRoles:
    """The roles of `precast store setup` on one store and a login in each (no password:
    the test server trusts local logins)."""

    reader: str
    writer: str
    app: str  # a login in the reader role
    job: str  # a login in the writer role

    def login(self, url: str, who: str) -> str:
        """`url` (as the postgres superuser) for the login `who`."""
        return url.replace("postgres@", f"{who}@", 1)


@contextmanager
def store_roles(admin_url: str) -> Iterator[StoreRoles]:
    """`precast store setup` on the store at `admin_url` (as the superuser; the URL's
    search_path names the use case's schema) and a login in each role. Roles are
    cluster-wide: every one is dropped at the end."""
    from precast import store

    suffix = uuid.uuid4().hex[:8]
    roles = StoreRoles(f"precast_reader_{suffix}", f"precast_writer_{suffix}",
                       f"app_{suffix}", f"job_{suffix}")
    admin = store.make_engine(admin_url)
    try:
        done = store.setup(admin, reader=roles.reader, writer=roles.writer)
        assert done[:2] == [f"created role {roles.writer}", f"created role {roles.reader}"]
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{roles.app}" LOGIN IN ROLE "{roles.reader}"')
            conn.exec_driver_sql(f'CREATE ROLE "{roles.job}" LOGIN IN ROLE "{roles.writer}"')
        yield roles
    finally:
        for role in (roles.app, roles.job, roles.writer, roles.reader):
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


@dataclass
class Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 and the Airflow connection that reaches it."""

    conn_id: str
    messages: list[Any]  # email.message.Message, in arrival order


def due_dags() -> set[str]:
    """The asset-scheduled DAGs Airflow's scheduler would start now (its own query)."""
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        _, triggered = DagModel.dags_needing_dagruns(session)
        return set(triggered)


def consume_queue(*dag_ids: str) -> None:
    """Drop the queued asset events of these DAGs (what the scheduler does on starting one)."""
    import sqlalchemy as sa
    from airflow.models.asset import AssetDagRunQueue
    from airflow.utils.session import create_session

    with create_session() as session:
        session.execute(sa.delete(AssetDagRunQueue).where(
            AssetDagRunQueue.target_dag_id.in_(dag_ids)))


def unpause(*dag_ids: str) -> None:
    """Write every DAG of the DAGs folder to the metadata database, as the dag-processor does,
    and unpause `dag_ids` (asset events queue runs only for unpaused DAGs)."""
    import sqlalchemy as sa
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():
        if not bundle.is_initialized:
            bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path,
                                    bundle_name=bundle.name), bundle.name, bundle.version)

    with create_session() as session:
        session.execute(sa.update(DagModel).where(DagModel.dag_id.in_(dag_ids))
                        .values(is_paused=False))


@dataclass(frozen=True)
class MlflowServer:
    """A real `mlflow server` subprocess on 127.0.0.1 (its own process group)."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop it (and its workers) and wait until nothing answers."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mlflow_server(backend: Path, artifacts: Path, output: Path) -> Iterator[MlflowServer]:
    """`mlflow server` (one worker) with its SQLite backend at `backend` and its artifacts
    under `artifacts`, output to `output`; ready (/health answers) when it is yielded."""
    port = free_port()
    with output.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
             f"sqlite:///{backend}", "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, output.read_text()
            try:
                with urllib.request.urlopen(f"{server.url}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.5)
        yield server
    finally:
        server.stop()


def register_two(cfg: Config) -> None:
    """Versions 1 (champion) and 2 (challenger) of two tiny models in cfg's registry."""
    import mlflow
    import mlflow.xgboost
    import numpy as np

    from precast.model import registry

    registry.client(cfg)
    rng = np.random.default_rng(0)
    matrix = xgb.DMatrix(rng.normal(size=(40, 2)), label=rng.integers(0, 2, 40))
    for _ in range(2):  # requirements given: MLflow infers them in a subprocess (seconds)
        with mlflow.start_run():
            mlflow.xgboost.log_model(xgb.train({"max_depth": 2}, matrix, 2), name="model",
                                     registered_model_name=cfg.model.name,
                                     pip_requirements=[f"xgboost=={xgb.__version__}"])
    registry.set_alias(cfg, registry.CHAMPION, "1")
    registry.set_alias(cfg, registry.CHALLENGER, "2")
