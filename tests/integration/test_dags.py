"""A use case's DAGs import cleanly, wire only, and run end to end under `dag.test()`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from precast.use_case import USE_CASES_ENV
from tests.helpers import CHURN, DAGS, make_world, run_ok, write_world_config

HEAVY = ("pyspark", "apache_beam", "xgboost", "mlflow", "great_expectations", "pandas",
         "precast.steps", "precast.pipeline")


def test_dags_import_without_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dags) == [f"churn__{role}" for role in (
        "monitor", "predict", "promote", "rollback", "training")]
    training = dagbag.dags["churn__training"]
    predict = dagbag.dags["churn__predict"]
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
    assert [a.name for a in training.task_dict["gate"].outlets] == ["churn__champion"]
    rollback = dagbag.dags["churn__rollback"]
    assert type(rollback.timetable).__name__ == "NullTimetable"  # manual only
    assert set(rollback.params) == {"target", "reason"}
    assert [t.task_id for t in rollback.tasks] == ["rollback"]
    assert type(training.timetable).__name__ == "AssetOrTimeSchedule"  # daily or on request
    assert "churn__retrain" in str(training.timetable.asset_condition)
    monitor = dagbag.dags["churn__monitor"]
    assert [t.task_id for t in monitor.topological_sort()] == ["monitor", "retrain_rule"]
    assert [a.name for a in monitor.task_dict["retrain_rule"].outlets] == ["churn__retrain"]
    assert "churn__predictions" in str(monitor.timetable.asset_condition)
    for dag in (training, predict, monitor):
        assert dag.on_failure_callback, f"{dag.dag_id} raises no alert when a run fails"
    promote = dagbag.dags["churn__promote"]
    assert type(promote.timetable).__name__ == "NullTimetable"  # manual only
    assert set(promote.params) == {"action", "version", "reason"}
    assert [t.task_id for t in promote.tasks] == ["promote"]


def test_dag_files_import_nothing_heavy() -> None:
    code = (
        "import runpy, sys, json\n"
        f"for f in {sorted(str(p) for p in DAGS.glob('*.py'))!r}: runpy.run_path(f)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))\n"
    )
    out = run_ok([sys.executable, "-c", code], env={**os.environ, USE_CASES_ENV: str(CHURN)})
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_plugin_imports_nothing_heavy() -> None:
    """Every Airflow process loads the plugins (each task runner, for listeners); the view's
    app, the store and the page code are imported by the api-server's first request only."""
    code = ("import sys, json\nimport precast.ui.plugin\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith("
            f"{(*HEAVY, 'fastapi', 'precast.ui.app', 'precast.store')!r}))))\n")
    out = run_ok([sys.executable, "-c", code])
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_both_dags_run_end_to_end(dags_of, airflow_db, tmp_path: Path, spark,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from precast import store
    from precast.model import registry
    from precast.serving.lookup import LookupClient

    world = make_world(tmp_path)
    dagbag = dags_of(world.config_path)
    monkeypatch.setenv("PRECAST_HOME", str(world.cfg.home))
    conf = {"snapshot_date": world.run_date.isoformat()}
    run = dagbag.dags["churn__training"].test(run_conf={**conf, "data_only": False})
    assert run.state == "success"
    champion = registry.by_alias(world.cfg, registry.CHAMPION)
    assert champion is not None and champion.tags["run_date"] == world.run_date.isoformat()
    run = dagbag.dags["churn__predict"].test(run_conf=conf)
    assert run.state == "success"
    current = store.current(world.cfg.predictions_url)
    assert current is not None and current.model_version == champion.version
    assert current.snapshot_date == world.run_date
    with LookupClient(world.cfg.predictions_url) as client:
        miss = client.get(["nobody"])[0]
    assert miss.found is False and miss.score == float(champion.tags["train_label_rate"])
    assert (current.mlflow_run_id, current.code_version) == (
        champion.run_id, champion.tags["code_version"])
    _rollback_through_the_dag(dagbag, world, champion, current)


def _rollback_through_the_dag(dagbag, world, champion, first) -> None:
    """A newer model v2 is promoted and published; churn__rollback `model:<v1>` serves v1's
    snapshot again and moves the champion alias back; a bad target fails the task."""
    import pyarrow as pa
    from mlflow import MlflowClient

    from precast import store
    from precast.model import registry

    client = MlflowClient(world.cfg.tracking_uri, world.cfg.tracking_uri)
    v1 = client.get_model_version(champion.name, champion.version)
    v2 = client.create_model_version(champion.name, str(v1.source), run_id=v1.run_id).version
    registry.set_alias(world.cfg, registry.CHAMPION, str(v2))
    batch = pa.RecordBatch.from_pydict({
        "entity_id": ["u1"], "score": [0.5],
        "scored_at": pa.array([first.published_at], pa.timestamp("us", tz="UTC"))})
    meta = store.SnapshotMeta(first.snapshot_date, champion.name, str(v2), "d2")
    second = store.publish(world.cfg.predictions_url, [batch], meta, keep=5)
    rollback = dagbag.dags["churn__rollback"]
    run = rollback.test(run_conf={"target": f"model:{champion.version}", "reason": "v2 is off"})
    assert run.state == "success"
    served = store.current(world.cfg.predictions_url)
    assert served is not None and served.snapshot_id == first.snapshot_id != second.snapshot_id
    assert served.activation_reason == "v2 is off"
    assert (served.activated_by or "").endswith("(churn__rollback)")
    assert registry.by_alias(world.cfg, registry.CHAMPION).version == champion.version
    run = rollback.test(run_conf={"target": "model:404", "reason": "no such version"})
    assert run.state == "failed"
    assert store.current(world.cfg.predictions_url).snapshot_id == first.snapshot_id
    _a_failed_run_is_an_alert(world, run)
    _promote_through_the_dag(dagbag, world, champion.version, str(v2))


def _a_failed_run_is_an_alert(world, run) -> None:
    """The DAGs' on_failure_callback records a failed run once as an alert of its use case."""
    from precast.monitoring import alerts
    from precast.orchestration.tasks import alert_on_failure
    from precast.orchestration.use_cases import use_cases

    (uc,) = use_cases()
    assert uc.config == world.config_path.resolve()
    for _ in range(2):
        alert_on_failure(uc)({"dag_run": run, "reason": "task_failure"})
    (alert,) = [a for a in alerts.alerts_of(world.cfg) if a["rule"] == "dag_run_failed"]
    assert alert["subject"] == "churn__rollback" and alert["severity"] == "critical"
    assert alert["message"].startswith(f"churn__rollback run {run.run_id} failed: task_failure")


def _promote_through_the_dag(dagbag, world, v1: str, v2: str) -> None:
    """churn__promote pins the champion, then forces v2 in, as the triggering user; every
    change is in champion_history; an unknown version fails the task."""
    from precast.gate import champions
    from precast.model import registry

    promote = dagbag.dags["churn__promote"]
    run = promote.test(run_conf={"action": "pin", "reason": "quarter-end freeze"})
    assert run.state == "success"
    pinned = champions.current(world.cfg.predictions_url, world.cfg.model.name)
    assert pinned is not None and pinned.pinned and pinned.model_version == v1
    assert pinned.decided_by.endswith("(churn__promote)")
    run = promote.test(run_conf={"action": "force", "version": "404", "reason": "typo"})
    assert run.state == "failed"
    run = promote.test(run_conf={"action": "force", "version": v2, "reason": "reviewed"})
    assert run.state == "success"
    assert registry.by_alias(world.cfg, registry.CHAMPION).version == v2
    history = champions.history(world.cfg.predictions_url, world.cfg.model.name)
    assert [(p.model_version, p.decision) for p in history] == [
        (v2, "override"), (v1, "pin"), (v1, "rollback"), (v1, "gate")]


def test_a_predict_run_before_any_champion_is_skipped_not_failed(
        dags_of, airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduled predict run that `airflow up` starts before any training has nothing to
    score: it is skipped with the reason (green), not failed at inference_features."""
    world = write_world_config(tmp_path, {})
    dagbag = dags_of(world.config_path)
    monkeypatch.setenv("PRECAST_HOME", str(world.cfg.home))
    run = dagbag.dags["churn__predict"].test(
        run_conf={"snapshot_date": world.run_date.isoformat()})
    assert run.state == "success"
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == dict.fromkeys(
        ("inference_features", "validate_inference", "score", "validate_predictions",
         "publish"), "skipped")
