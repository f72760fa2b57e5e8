"""Use cases side by side in one deployment: each has its own store namespace (a PostgreSQL
schema, or its own SQLite file), lake, home folder, champion history and alerts; nothing
one does reaches another."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import alerts, champions, store
from precast.config import Config

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
