"""The cluster path: a training DAG's Spark steps run by spark-submit on a standalone cluster.

A Spark standalone master and one worker (1 core, 2 GiB) are started on 127.0.0.1 from the
PySpark package, each in its own session, and stopped with all their children at the end.
The DAG is unchanged: only PRECAST_ENGINES__SPARK__MASTER points at the cluster. The lake
comes from the Airflow Variable `precast_lake` in the metadata database (PRECAST_STORES__LAKE
points elsewhere), so a connection/variable override reaches the submitted jobs too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psutil
import pytest

from precast.config import SparkConfig
from precast.lake import Lake, manifest_path, read_json
from precast.orchestration.local import stop_process_tree
from tests.helpers import CHURN, FAST_START_SPARK, JIT_FLAGS, REPO, make_world

pytestmark = pytest.mark.slow(minutes=3)

SPARK_CLASS = Path(sys.executable).parent / "spark-class"
SUBMITTED = {"precast-extract", "precast-validate_events", "precast-features"}
CLUSTER_CONF = {**SparkConfig().conf, **FAST_START_SPARK, "spark.executor.memory": "1g",
                "spark.cores.max": "1", "spark.executor.extraJavaOptions": JIT_FLAGS}
TINY = {"demo": {"users": 300, "days": 36, "seed": 11, "start_date": "2026-01-01",
                 "corrupt_fraction": 0.003},
        "engines": {"spark": {"master": "local[2]", "conf": CLUSTER_CONF}}}


@dataclass(frozen=True)
class Cluster:
    master: str  # spark://127.0.0.1:PORT
    status_url: str  # the master's JSON status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.load(response))


def _start(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as out:
        return subprocess.Popen([str(SPARK_CLASS), *args], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"})


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], logs: list[Path],
                timeout_s: float = 120) -> None:
    """Poll the master's JSON until one ALIVE worker is registered."""
    deadline, last = time.monotonic() + timeout_s, "no answer"
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        try:
            status = _status(url)
            workers = [w for w in status.get("workers", []) if w.get("state") == "ALIVE"]
            if status.get("status") == "ALIVE" and len(workers) == 1:
                return
            last = json.dumps({k: status.get(k) for k in ("status", "aliveworkers")})
        except OSError as exc:
            last = str(exc)
        time.sleep(1)
    tails = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs)
    raise RuntimeError(f"Spark standalone cluster not ready ({last}):\n{tails}")


@pytest.fixture(scope="module")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master and one worker on 127.0.0.1, stopped (children too) afterwards."""
    root = tmp_path_factory.mktemp("spark-cluster")
    port, ui, worker_ui = _free_port(), _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    logs = [root / "master.log", root / "worker.log"]
    procs = [_start(["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                     "--port", str(port), "--webui-port", str(ui)], logs[0])]
    try:
        procs.append(_start(["org.apache.spark.deploy.worker.Worker", master_url,
                             "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
                             "--webui-port", str(worker_ui), "--work-dir", str(root / "work")],
                            logs[1]))
        _wait_ready(f"http://127.0.0.1:{ui}/json/", procs, logs)
        yield Cluster(master_url, f"http://127.0.0.1:{ui}/json/")
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(psutil.NoSuchProcess):
                stop_process_tree(psutil.Process(proc.pid))
            proc.wait(timeout=15)


@pytest.fixture
def lake_variable(airflow_db: None) -> Iterator[Any]:
    """Sets the Airflow Variable `precast_lake` in the metadata database; deleted afterwards."""
    from airflow.models.variable import Variable

    yield lambda value: Variable.set("precast_lake", value)
    Variable.delete("precast_lake")


def _completed_apps(url: str, names: set[str], timeout_s: float = 60) -> set[str]:
    """Names of the finished applications (the master records an app when its driver leaves)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done = {a["name"] for a in _status(url).get("completedapps", [])}
        if names <= done or time.monotonic() > deadline:
            return done
        time.sleep(1)


def test_data_only_training_runs_its_spark_steps_on_the_cluster(
        spark_cluster: Cluster, lake_variable: Any, dags_of: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    world = make_world(tmp_path, TINY)
    lake_variable(world.cfg.lake_root.removesuffix("/churn"))  # the use case's prefix follows
    monkeypatch.setenv("PRECAST_HOME", str(world.cfg.home))
    monkeypatch.setenv("PRECAST_ENGINES__SPARK__MASTER", spark_cluster.master)
    monkeypatch.setenv("PRECAST_STORES__LAKE", str(tmp_path / "not-the-lake"))
    dag = dags_of(world.config_path).dags["churn__training"]

    run = dag.test(run_conf={"snapshot_date": world.run_date.isoformat(), "data_only": True})

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    assert states == {"extract": "success", "validate_events": "success",
                      "features": "success", "validate_features": "success",
                      "train": "skipped", "gate": "skipped"}
    lake = Lake(world.cfg.lake_root)
    for kind in ("train", "test", "inference"):
        manifest = read_json(manifest_path(lake.dataset(kind, world.run_date)))
        assert manifest is not None and manifest["row_count"] > 0, kind
    assert read_json(manifest_path(lake.events(world.run_date))) is not None
    assert not (tmp_path / "not-the-lake").exists()
    record = json.loads((world.cfg.space / "runs" / world.run_date.isoformat() / "features.json")
                        .read_text())
    assert record["status"] == "success" and len(record["result"]["datasets"]) == 3
    assert SUBMITTED <= _completed_apps(spark_cluster.status_url, SUBMITTED)


def test_a_failure_retrying_cannot_fix_stays_final_across_spark_submit(
        spark_cluster: Cluster, tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from precast.config import load_config
    from precast.orchestration import submit

    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(tmp_path / "empty")}).with_overrides(
        {"engines.spark.master": spark_cluster.master, "engines.spark.conf": CLUSTER_CONF})
    with pytest.raises(AirflowFailException, match="features failed for 2026-02-05: "
                                                   "NotEnoughHistoryError: clean events end at"):
        submit.run_submitted(cfg, "features", date(2026, 2, 5), {}, REPO / "jobs", CHURN)
