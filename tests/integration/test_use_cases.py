"""Use cases side by side in one deployment: each has its own store namespace (a PostgreSQL
schema, or its own SQLite file), lake, home folder, champion history and alerts; nothing
one does reaches another."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.config import Config, load_config
from precast.gate import champions
from precast.monitoring import alerts
from tests.helpers import (
    CHURN_LOGS,
    FAST_START_SPARK,
    SHOP,
    consume_queue,
    due_dags,
    merged,
    unpause,
    use_case_copy,
)

DAY = date(2026, 3, 1)


def _use_case(name: str, home: Path, url: str | None) -> Config:
    stores = {"predictions_url": url} if url else {}
    return Config.model_validate({"name": name, "home": str(home), "stores": stores})


def _publish(cfg: Config, entity: str, score: float, day: int) -> store.SnapshotInfo:
    batch = pa.RecordBatch.from_pydict({
        "entity_id": [entity], "score": [score],
        "scored_at": pa.array([datetime(2026, 3, day, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))})
    meta = store.SnapshotMeta(date(2026, 3, day), cfg.model.name, str(day), f"d{day}")
    return store.publish(cfg.predictions_url, [batch], meta, keep=1)


def _served(cfg: Config) -> list[tuple[str, float]]:
    engine = store.make_engine(cfg.predictions_url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "SELECT entity_id, score FROM predictions_current ORDER BY entity_id"))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite",
                                     pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_use_cases_in_one_store_never_see_each_other(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    churn = _use_case("churn", tmp_path / "home", url)
    shop = _use_case("shop", tmp_path / "home", url)
    assert churn.lake_root != shop.lake_root and churn.space != shop.space
    assert churn.model.name == "churn" and shop.model.experiment == "shop"

    first = _publish(churn, "u1", 0.25, 1)
    _publish(shop, "c1", 42.0, 1)
    _publish(churn, "u2", 0.75, 2)  # churn keeps one snapshot: its first table is dropped

    assert _served(churn) == [("u2", 0.75)]
    assert _served(shop) == [("c1", 42.0)]  # retention of churn left shop's table alone
    assert [s.status for s in store.snapshots(shop.predictions_url)] == ["published"]
    assert [s.status for s in store.snapshots(churn.predictions_url)][:1] == ["retired"]
    assert first.snapshot_id == 1 and store.current(shop.predictions_url).snapshot_id == 1

    champions.record(churn.predictions_url, churn.model.name, "2", decided_by="test",
                     decision="gate", reason="better")
    assert champions.current(shop.predictions_url, shop.model.name) is None
    alerts.raise_alerts(churn, [alerts.Alert(DAY, "psi_max", "plan", "drift", 0.3, 0.2)])
    assert alerts.alerts_of(shop) == [] and len(alerts.alerts_of(churn)) == 1
    if backend == "postgres":
        assert churn.predictions_url.endswith("search_path%3Dchurn")
        engine = store.make_engine(str(url))
        try:
            with engine.connect() as conn:
                views = conn.execute(sa.text(
                    "SELECT table_schema FROM information_schema.views "
                    "WHERE table_name = 'predictions_current' ORDER BY 1")).scalars().all()
        finally:
            engine.dispose()
        assert views == ["churn", "shop"]
    else:
        assert churn.predictions_url != shop.predictions_url  # a SQLite file each


START = date(2026, 1, 1)
FAST = {  # small worlds with short windows: the point here is isolation, not model quality
    "features": {"short_window_days": 3, "long_window_days": 7, "label_horizon_days": 7,
                 "snapshot_interval_days": 3, "train_snapshots": 2},
    "train": {"num_boost_round": 80, "early_stopping_rounds": 10},
    "gate": {"floors": {}, "max_mean_score_gap": None},
    "engines": {"spark": {"master": "local[2]", "conf": FAST_START_SPARK}},
    "validation": {"data_docs": False},
}


def _side_by_side(tmp_path: Path) -> tuple[Config, Config]:
    """The churn and shop examples as two use-case folders sharing one home (MLflow, lake)."""
    home = {"home": str(tmp_path / "home")}
    churn = load_config(use_case_copy(tmp_path / "churn", merged(FAST, {**home, "demo": {
        "users": 1200, "days": 22, "start_date": START.isoformat()}})))
    shop = load_config(use_case_copy(tmp_path / "shop", merged(FAST, {**home, "demo": {
        "users": 600, "days": 30, "start_date": START.isoformat()},
        "gate": {"floors": {"r2": -1e9}}}), SHOP))  # 600 customers: any R² passes
    d = churn.demo
    CHURN_LOGS.generate(churn.lake_root, users=d.users, days=d.days, seed=d.seed,
                       start_date=d.start_date, corrupt_fraction=d.corrupt_fraction)
    return churn, shop


def _run(dags: Any, dag_id: str, day: date, **conf: Any) -> Any:
    if dag_id.endswith("__training"):
        conf.setdefault("data_only", False)  # dag.test() reuses the DAG's Params
    return dags.dags[dag_id].test(run_conf={"snapshot_date": day.isoformat(), **conf})


@pytest.mark.postgres
@pytest.mark.slow(minutes=5)
@pytest.mark.timeout(1500)
def test_churn_and_shop_side_by_side_in_one_postgres_and_one_airflow(
        tmp_path: Path, pg_url: str, dags_of: Any, airflow_db: None, spark: Any,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from precast.cli.main import main
    from precast.model import registry

    monkeypatch.setenv("PRECAST_STORES__PREDICTIONS_URL", pg_url)  # one database for both
    churn, shop = _side_by_side(tmp_path)
    assert churn.predictions_url != shop.predictions_url and shop.model.task == "regression"
    churn_day = START + timedelta(days=churn.demo.days - 1)
    shop_day = START + timedelta(days=shop.demo.days - 1)

    # The shop example by configuration only, as a person first runs it: precast demo.
    assert main(["--use-case", str(shop.folder), "demo"]) == 0
    assert "no-such-user: no prediction in snapshot 1 (fallback score=" in capsys.readouterr().out
    (first_shop,) = store.snapshots(shop.predictions_url)

    # A second shop model through the DAGs (another seed, let through by the gate): the same
    # inputs would give the demo's model and snapshot back (a retried training registers
    # nothing new).
    for key, value in (("TRAIN__SEED", "7"), ("GATE__TOLERANCE", "1e9"),
                       ("GATE__SLICE_TOLERANCE", "1e9")):
        monkeypatch.setenv(f"PRECAST_{key}", value)
    dags = dags_of(churn.folder / "precast.yaml", shop.folder / "precast.yaml")
    predicts = ("churn__predict", "shop__predict")
    unpause(*predicts)
    consume_queue(*predicts)
    assert _run(dags, "churn__training", churn_day).state == "success"
    assert due_dags() & set(predicts) == {"churn__predict"}  # churn's champion, churn's DAG
    consume_queue(*predicts)
    assert _run(dags, "churn__predict", churn_day).state == "success"
    assert _run(dags, "shop__training", shop_day).state == "success"  # through its DAGs too
    assert due_dags() & set(predicts) == {"shop__predict"}
    consume_queue(*predicts)
    assert _run(dags, "shop__predict", shop_day).state == "success"
    for dag_id, day in (("churn__monitor", churn_day), ("shop__monitor", shop_day)):
        assert _run(dags, dag_id, day).state == "success"
    assert _run(dags, "churn__predict", START - timedelta(days=5)).state == "failed"  # an alert

    # Rolling the shop back serves its first snapshot again; churn's stays as it was.
    churn_served = store.current(churn.predictions_url)
    rollback = _run(dags, "shop__rollback", shop_day, target=f"snapshot:{first_shop.snapshot_id}",
                    reason="back to the demo's")
    assert rollback.state == "success"
    assert store.current(shop.predictions_url).snapshot_id == first_shop.snapshot_id
    assert store.current(churn.predictions_url) == churn_served

    # Nothing of one is in the other's namespace.
    for cfg, other in ((churn, shop), (shop, churn)):
        names = {s.model_name for s in store.snapshots(cfg.predictions_url)}
        assert names == {cfg.model.name}
        assert {p.model_name for p in champions.history(cfg.predictions_url, other.model.name)
                } == set()
        assert registry.by_alias(cfg, registry.CHAMPION).name == cfg.model.name
        served = {r["entity_id"][0] for r in _rows(cfg, "predictions_current")}
        assert served == {"c" if cfg is shop else "u"}  # its own entities only
    failed = [a for a in alerts.alerts_of(churn) if a["rule"] == "dag_run_failed"]
    assert [a["subject"] for a in failed] == ["churn__predict"]
    assert [a for a in alerts.alerts_of(shop) if a["rule"] == "dag_run_failed"] == []
    assert len(store.snapshots(shop.predictions_url)) == 2
    assert len(store.snapshots(churn.predictions_url)) == 1
    assert {r["model_name"] for r in _rows(shop, "model_metrics")} == {shop.model.name}
    assert {r["model_name"] for r in _rows(churn, "model_metrics")} == {churn.model.name}


def _rows(cfg: Config, table: str) -> list[dict[str, Any]]:
    engine = store.make_engine(cfg.predictions_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.text(f"SELECT * FROM {table}"))]  # noqa: S608 - a fixed name
    finally:
        engine.dispose()
