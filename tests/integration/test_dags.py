"""Both DAGs import cleanly, wire only, and run end to end under `dag.test()`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_world

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
HEAVY = ("pyspark", "apache_beam", "xgboost", "mlflow", "great_expectations", "pandas",
         "precast.steps", "precast.pipeline")


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))


def test_dags_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    training = dagbag.dags["precast_training"]
    predict = dagbag.dags["precast_predict"]
    assert [t.task_id for t in training.topological_sort()] == [
        "extract", "validate_events", "features", "validate_features", "train", "gate"]
    assert [t.task_id for t in predict.topological_sort()] == [
        "inference_features", "validate_inference", "score", "validate_predictions", "publish"]
    assert set(training.params) == {"snapshot_date", "tolerance", "data_only"}
    assert training.params["data_only"] is False
    assert training.task_dict["extract"].retries == 2
    assert training.task_dict["extract"].max_active_tis_per_dag == 1  # backfills share days
    assert training.task_dict["gate"].max_active_tis_per_dag == 1  # one champion alias
    assert predict.task_dict["publish"].max_active_tis_per_dag == 1
    assert training.task_dict["gate"].retries == 0  # a rejection cannot be retried away
    assert training.task_dict["validate_features"].retries == 0
    assert [a.name for a in training.task_dict["gate"].outlets] == ["precast_champion"]


def test_dag_files_import_nothing_heavy() -> None:
    code = (
        "import runpy, sys, json\n"
        f"for f in {sorted(str(p) for p in DAGS.glob('*.py'))!r}: runpy.run_path(f)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_both_dags_run_end_to_end(dagbag, airflow_db, tmp_path: Path, spark,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from precast import registry, store
    from precast.lookup import LookupClient

    world = make_world(tmp_path)
    monkeypatch.setenv("PRECAST_CONFIG", str(world.config_path))
    monkeypatch.setenv("PRECAST_HOME", str(world.cfg.home))
    conf = {"snapshot_date": world.run_date.isoformat()}
    run = dagbag.dags["precast_training"].test(run_conf=conf)
    assert run.state == "success"
    champion = registry.by_alias(world.cfg, registry.CHAMPION)
    assert champion is not None and champion.tags["run_date"] == world.run_date.isoformat()
    run = dagbag.dags["precast_predict"].test(run_conf=conf)
    assert run.state == "success"
    current = store.current(world.cfg.predictions_url)
    assert current is not None and current.model_version == champion.version
    assert current.snapshot_date == world.run_date
    assert LookupClient(world.cfg.predictions_url).get(["nobody"])[0].found is False
