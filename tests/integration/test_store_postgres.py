"""The prediction store on the real PostgreSQL: COPY load, the view contract, DB errors.

The behaviour shared with SQLite is tested on both backends in tests/code/test_publish.py;
these are the PostgreSQL-only parts.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.lookup import LookupClient
from precast.store import SnapshotMeta

pytestmark = pytest.mark.postgres

DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 30, 15, 123456, tzinfo=UTC)


def _batch(ids: list[str], scores: list[float]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({
        "entity_id": pa.array(ids, pa.string()),
        "score": pa.array(scores, pa.float64()),
        "scored_at": pa.array([SCORED_AT] * len(ids), pa.timestamp("us", tz="UTC")),
    })


def _meta(version: str) -> SnapshotMeta:
    return SnapshotMeta(snapshot_date=DAY, model_name="churn", model_version=version,
                        data_version=f"data-{version}", note=f"test {version}")


def _query(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_other_postgresql_drivers_are_refused() -> None:
    with pytest.raises(store.StoreError, match="needs the psycopg \\(3\\) driver"):
        store.make_engine("postgresql+psycopg2://app@127.0.0.1/precast")


def test_plain_postgresql_url_gets_the_psycopg_driver(pg_url: str) -> None:
    engine = store.make_engine(pg_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


def test_copy_load_types_key_and_view_contract(pg_url: str) -> None:
    ids = [f"u{i:04d}" for i in range(2500)]
    scores = [i / 7 for i in range(2500)]
    batches = [_batch(ids[:1000], scores[:1000]), _batch(ids[1000:], scores[1000:])]
    info = store.publish(pg_url, batches, _meta("1"), keep=2)
    assert (info.row_count, info.note) == (2500, "test 1")
    assert _query(pg_url, "SELECT definition LIKE '%predictions_1%' FROM pg_views "
                          "WHERE viewname = 'predictions_current'") == [(True,)]
    assert _query(pg_url, "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON "
                          "a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE "
                          "i.indrelid = 'predictions_1'::regclass AND i.indisprimary") == [
        ("entity_id",)]
    assert _query(pg_url, "SELECT count(*), sum(score), min(scored_at), max(snapshot_date) "
                          "FROM predictions_current") == [
        (2500, pytest.approx(sum(scores)), SCORED_AT, DAY)]
    with LookupClient(pg_url) as client:
        assert [r.score for r in client.get(ids)] == scores


def test_server_error_during_copy_keeps_previous_snapshot(pg_url: str) -> None:
    store.publish(pg_url, [_batch(["a", "b"], [0.1, 0.2])], _meta("1"), keep=2)
    bad = [_batch(["c"], [0.3]), _batch(["nul\x00byte"], [0.4])]  # PostgreSQL text refuses NUL
    with pytest.raises(psycopg.errors.CharacterNotInRepertoire, match="COPY predictions_2"):
        store.publish(pg_url, bad, _meta("2"), keep=2)
    assert _query(pg_url, "SELECT entity_id, score, snapshot_id FROM predictions_current "
                          "ORDER BY entity_id") == [("a", 0.1, 1), ("b", 0.2, 1)]
    assert _query(pg_url, "SELECT to_regclass('predictions_2') IS NULL") == [(True,)]
    assert [(s.snapshot_id, s.status) for s in store.snapshots(pg_url)] == [
        (1, "published"), (2, "failed")]
    assert store.publish(pg_url, [_batch(["c"], [0.3])], _meta("3"), keep=2).snapshot_id == 3


def test_swap_waits_for_an_open_reader_transaction(pg_url: str) -> None:
    """A reader mid-transaction keeps its snapshot: the swap waits, then gives up (5 s lock
    timeout set by the store itself) instead of queueing every new lookup behind it."""
    store.publish(pg_url, [_batch(["a"], [0.1])], _meta("1"), keep=2)
    impatient = pg_url
    engine = store.make_engine(pg_url)
    try:
        with engine.connect() as reader:
            first = reader.exec_driver_sql("SELECT score FROM predictions_current").scalar()
            with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                store.publish(impatient, [_batch(["a"], [0.9])], _meta("2"), keep=2)
            again = reader.exec_driver_sql("SELECT score FROM predictions_current").scalar()
        assert (first, again) == (0.1, 0.1)
        assert [s.status for s in store.snapshots(engine)] == ["published", "failed"]
        assert _query(pg_url, "SELECT to_regclass('predictions_2') IS NULL") == [(True,)]
        assert store.publish(pg_url, [_batch(["a"], [0.9])], _meta("3"), keep=2).current
    finally:
        engine.dispose()
