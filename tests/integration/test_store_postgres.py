"""The prediction store on the real PostgreSQL: COPY load, the view contract, DB errors.

The behaviour shared with SQLite is tested on both backends in tests/code/test_publish.py;
these are the PostgreSQL-only parts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.serving.lookup import AsyncLookupClient, Lookup, LookupClient
from precast.store import SnapshotMeta
from tests.helpers import store_roles

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
    assert [(s.model_version, s.status) for s in store.snapshots(pg_url)] == [
        ("1", "published"), ("2", "failed")]
    assert store.publish(pg_url, [_batch(["c"], [0.3])], _meta("3"), keep=2).current


def test_swap_gives_up_on_a_reader_that_holds_the_view(pg_url: str) -> None:
    """A reader mid-transaction keeps its snapshot: each swap attempt waits at most the lock
    timeout (so lookups never queue behind it for long), then the publish fails, changing
    nothing, and says who blocked it."""
    store.publish(pg_url, [_batch(["a"], [0.1])], _meta("1"), keep=2)
    impatient = store.WritePolicy(lock_timeout_ms=50, attempts=2, pause_s=0.01)
    engine = store.make_engine(pg_url)
    try:
        with engine.connect() as reader:
            first = reader.exec_driver_sql("SELECT score FROM predictions_current").scalar()
            pid = reader.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with pytest.raises(store.SwapBlockedError, match=f"2 attempts of 50 ms.*pid {pid}"):
                store.publish(pg_url, [_batch(["a"], [0.9])], _meta("2"), keep=2,
                              policy=impatient)
            again = reader.exec_driver_sql("SELECT score FROM predictions_current").scalar()
        assert (first, again) == (0.1, 0.1)
        assert [s.status for s in store.snapshots(engine)] == ["published", "failed"]
        assert _query(pg_url, "SELECT count(*) FROM pg_tables WHERE tablename LIKE "
                              "'predictions%'") == [(1,)]
        assert store.publish(pg_url, [_batch(["a"], [0.9])], _meta("3"), keep=2).current
    finally:
        engine.dispose()


def test_roles_reader_reads_writer_publishes(pg_url: str) -> None:
    """`precast store setup`: a login in the reader role can look up and nothing else; a login
    in the writer role publishes (acting as the writer role, which owns what it creates)."""
    with store_roles(pg_url) as roles:
        admin = store.make_engine(pg_url)
        try:
            assert store.setup(admin, reader=roles.reader,
                               writer=roles.writer)[0].startswith("granted")
        finally:
            admin.dispose()
        as_app, as_job = roles.login(pg_url, roles.app), roles.login(pg_url, roles.job)
        policy = store.WritePolicy(writer_role=roles.writer)
        store.publish(as_job, [_batch(["a"], [0.1])], _meta("1"), keep=1, policy=policy)
        store.publish(as_job, [_batch(["a"], [0.2])], _meta("2"), keep=1, policy=policy)
        assert _query(pg_url, "SELECT tableowner FROM pg_tables WHERE tablename = "
                              "'predictions_2'") == [(roles.writer,)]
        with LookupClient(as_app) as client:
            assert client.get_one("a").score == 0.2
        assert _query(as_app, "SELECT count(*) FROM predictions_current") == [(1,)]
        for sql in ("DELETE FROM prediction_snapshots", "DROP VIEW predictions_current",
                    "DROP TABLE predictions_2", "CREATE TABLE x (a int)"):
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied|must be owner"):
                _query(as_app, sql)


def test_async_client_coalesces_concurrent_lookups(pg_url: str) -> None:
    """Concurrent get_one calls share statements, and each still gets its own exact answer;
    a caller that gives up while queued is skipped without disturbing the others."""
    ids = [f"u{i:04d}" for i in range(400)]
    scores = [i / 1000 for i in range(400)]
    store.publish(pg_url, [_batch(ids, scores)], _meta("1"), keep=2)
    wanted = [*reversed(ids), "nobody", ids[3], "nobody-else", ids[3]]

    async def scenario() -> tuple[list[Lookup], list[Any], int]:
        client = AsyncLookupClient(pg_url, fallback_score=0.25, concurrency=1)
        await client.open()
        try:
            answers = await asyncio.gather(*(client.get_one(i) for i in wanted))
            late = [asyncio.create_task(client.get_one(i)) for i in ids[:20]]
            await asyncio.sleep(0)  # every late call is queued now
            late[5].cancel()
            settled = await asyncio.gather(*late, return_exceptions=True)
            return answers, settled, client.statements
        finally:
            await client.close()

    answers, settled, statements = asyncio.run(scenario())
    known = dict(zip(ids, scores, strict=True))
    assert [(a.entity_id, a.score, a.fallback) for a in answers] == [
        (i, known.get(i, 0.25), i not in known) for i in wanted]
    assert {(a.snapshot_id, a.model_version) for a in answers} == {(1, "1")}
    assert [a.scored_at for a in answers if a.found] == [SCORED_AT] * (len(wanted) - 2)
    assert isinstance(settled[5], asyncio.CancelledError)
    assert [s.score for k, s in enumerate(settled) if k != 5] == [
        known[i] for k, i in enumerate(ids[:20]) if k != 5]
    assert statements <= 10, f"{len(wanted) + 19} calls took {statements} statements"
