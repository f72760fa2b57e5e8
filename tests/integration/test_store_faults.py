"""Concurrency and fault proofs of the prediction store, on real PostgreSQL and SQLite files.

- Readers in separate processes hammer lookups while snapshots are published, rolled back and
  rolled forward: every answer comes from exactly one complete snapshot.
- A publisher SIGKILLed mid-COPY (mid-load on SQLite) or while its swap waits, a swap blocked
  by a long reader, a fault raised inside the swap and a contract break in the last batch all
  leave the served snapshot untouched and complete, no table behind, and the next publish works.

Every snapshot is built so that its rows name it: generation k holds the ids `e<i>` with
`i % 7 != k % 7` (so the id sets differ), score `k + i / 1e7` and fallback score `k + 0.5`.

    .venv/bin/pytest tests/integration/test_store_faults.py
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.serving.lookup import Lookup, LookupClient, libpq_conninfo
from precast.store import DuplicateEntityError, SnapshotMeta, SwapBlockedError, WritePolicy

DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 30, tzinfo=UTC)
ABSENT = ["nobody-1", "nobody-2"]  # in no snapshot: always answered as fallback
READERS = 3
SPAWN = mp.get_context("spawn")


# ---------------------------------------------------------------- snapshots that name themselves


def _entity(i: int) -> str:
    return f"e{i:06d}"


def _member(k: int, i: int) -> bool:
    """Does generation k hold entity i? Ids with i % 7 in {0, 5, 6} are in every generation."""
    return i % 7 != k % 7


def _score(k: int, i: int) -> float:
    return k + i / 1e7


def _expected(k: int, n: int) -> dict[str, float]:
    return {_entity(i): _score(k, i) for i in range(n) if _member(k, i)}


def _batches(k: int, n: int, size: int = 25_000, lo: int = 0) -> Iterator[pa.RecordBatch]:
    """Generation k's rows for entities lo..n-1, in batches of `size` entity numbers."""
    for start in range(lo, n, size):
        i = np.arange(start, min(start + size, n))
        i = i[i % 7 != k % 7]
        yield pa.RecordBatch.from_pydict({
            "entity_id": pa.array([_entity(int(x)) for x in i], pa.string()),
            "score": pa.array(k + i / 1e7, pa.float64()),
            "scored_at": pa.array(np.full(len(i), SCORED_AT), pa.timestamp("us", tz="UTC")),
        })


def _meta(k: int) -> SnapshotMeta:
    return SnapshotMeta(snapshot_date=DAY, model_name="churn", model_version=str(k),
                        data_version=f"data-{k}", fallback_score=k + 0.5)


# ---------------------------------------------------------------- stores and what they hold


# store_url (SQLite and PostgreSQL) and pg_url come from tests/conftest.py.


def _is_pg(url: str) -> bool:
    return url.startswith("postgresql")


def _query(url: str, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params or {})]
    finally:
        engine.dispose()


def _snapshot_tables(url: str) -> set[str]:
    """Every committed table named predictions_<n> (the view is not a table)."""
    engine = store.make_engine(url)
    try:
        names = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    return {name for name in names if name.startswith("predictions_")}


def _statuses(url: str) -> list[tuple[int, str, str]]:
    return [(s.snapshot_id, s.model_version, s.status) for s in store.snapshots(url)]


def _assert_serves(url: str, snapshot_id: int, k: int, n: int) -> None:
    """The view serves exactly generation k as snapshot `snapshot_id`: every row, nothing else."""
    served = store.current(url)
    expected = _expected(k, n)
    assert served is not None
    assert (served.snapshot_id, served.model_version, served.row_count) == (
        snapshot_id, str(k), len(expected))
    rows = _query(url, "SELECT entity_id, score, snapshot_id FROM predictions_current")
    assert {sid for _, _, sid in rows} == {snapshot_id}
    assert len(rows) == len(expected)
    assert {entity: score for entity, score, _ in rows} == expected
    sample = [_entity(i) for i in range(0, n, max(1, n // 40))] + ABSENT
    with LookupClient(url) as client:
        _check_answer(client.get(sample), {snapshot_id: k})


def _check_answer(answers: list[Lookup], generation: dict[int, int]) -> int:
    """One call's answers all come from one served snapshot and match it; returns its id."""
    sids = {a.snapshot_id for a in answers}
    assert len(sids) == 1, f"one call answered from several snapshots {sids}: {answers[:3]}"
    (sid,) = sids
    assert sid in generation, f"answered from snapshot {sid}, never served: {answers[:3]}"
    k = generation[sid]
    for a in answers:
        i = int(a.entity_id[1:]) if a.entity_id.startswith("e") else -1
        assert a.model_version == str(k), a
        if i >= 0 and _member(k, i):
            assert (a.fallback, a.score) == (False, _score(k, i)), (k, a)
        else:
            assert (a.fallback, a.score) == (True, k + 0.5), (k, a)
    return sid


def _wait(what: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


# ---------------------------------------------------------------- concurrency proof


def _read_until_stopped(url: str, reader: int, n: int, go: EventType, stop: EventType,
                        latest: Any, out: str) -> None:
    """Reader process: from `go`, lookups until `stop`; each call's answers and errors to `out`."""
    rng = random.Random(reader)
    calls: list[tuple[str, float, list[tuple[Any, ...]]]] = []
    errors: list[str] = []
    go.wait(timeout=120)
    with LookupClient(url) as client:
        while not stop.is_set() and len(errors) < 50:
            ids = [_entity(i) for i in rng.sample(range(n), 48)] + ABSENT
            rng.shuffle(ids)
            kind = "get_one" if len(calls) % 3 == 2 else "get"
            began = time.perf_counter()
            try:
                answers = [client.get_one(ids[0])] if kind == "get_one" else client.get(ids)
            except Exception as exc:  # every error is a failure, reported by the test
                errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            calls.append((kind, time.perf_counter() - began,
                          [(a.entity_id, a.score, a.fallback, a.snapshot_id, a.model_version,
                            a.model_name, a.snapshot_date) for a in answers]))
            latest[reader] = answers[0].snapshot_id or 0
    Path(out).write_bytes(pickle.dumps((calls, errors)))


def _compressed(sequence: list[int]) -> list[int]:
    """The sequence without consecutive repeats."""
    return [x for j, x in enumerate(sequence) if j == 0 or sequence[j - 1] != x]


@pytest.mark.timeout(240)
def test_readers_see_one_whole_snapshot_through_publishes_and_rollbacks(
    store_url: str, tmp_path: Path
) -> None:
    # SQLite: fewer rows, as its batch lookup reads the whole snapshot (see the report)
    n = 100_000 if _is_pg(store_url) else 20_000
    generation: dict[int, int] = {}
    served: list[int] = []  # snapshot ids in the order the view served them

    def serve(info: store.SnapshotInfo, k: int) -> None:
        generation[info.snapshot_id] = k
        served.append(info.snapshot_id)

    go, stop, latest = SPAWN.Event(), SPAWN.Event(), SPAWN.Array("q", READERS)
    readers = [SPAWN.Process(target=_read_until_stopped, daemon=True, args=(
        store_url, r, n, go, stop, latest, str(tmp_path / f"reader{r}.pkl")))
        for r in range(READERS)]

    def seen_by_all(snapshot_id: int) -> Callable[[], bool]:
        def check() -> bool:
            dead = [p.exitcode for p in readers if p.exitcode is not None]
            assert not dead, f"a reader process exited early: {dead}"
            return all(latest[r] == snapshot_id for r in range(READERS))
        return check

    for process in readers:  # they start up while the first snapshot loads
        process.start()
    try:
        serve(store.publish(store_url, _batches(1, n), _meta(1), keep=3), 1)
        go.set()
        _wait("readers to start", seen_by_all(served[-1]), timeout=60)
        for k in (2, 3, 4):  # publishes under load; retention drops generation 1 meanwhile
            serve(store.publish(store_url, _batches(k, n), _meta(k), keep=3), k)
            _wait(f"readers to see generation {k}", seen_by_all(served[-1]))
        for target, k in ((served[1], 2), (served[3], 4)):  # rollback, then roll forward
            serve(store.activate(store_url, target, by="test", reason="proof"), k)
            _wait(f"readers to see generation {k} again", seen_by_all(served[-1]))
    finally:
        stop.set()
        go.set()
        for process in readers:
            process.join(timeout=60)
            if process.exitcode is None:
                process.kill()
    assert [p.exitcode for p in readers] == [0] * READERS
    assert _snapshot_tables(store_url) == {f"predictions_{sid}" for sid in served[1:4]}
    for r in range(READERS):
        calls, errors = pickle.loads((tmp_path / f"reader{r}.pkl").read_bytes())
        assert errors == [], f"reader {r} failed: {errors[:5]}"
        order = [_check_answer([_lookup(row) for row in answers], generation)
                 for _, _, answers in calls]
        assert set(order) == set(generation), f"reader {r} missed a snapshot: {set(order)}"
        # each reader saw every swap, in order, and never an older snapshot after a newer one
        assert _compressed(order) == served, f"reader {r} saw {_compressed(order)}"
        assert {kind for kind, _, _ in calls} == {"get", "get_one"}
    _assert_serves(store_url, served[-1], 4, n)


def _lookup(row: tuple[Any, ...]) -> Lookup:
    entity_id, score, fallback, snapshot_id, model_version, model_name, snapshot_date = row
    return Lookup(entity_id=entity_id, score=score, fallback=fallback, model_name=model_name,
                  model_version=model_version, snapshot_id=snapshot_id,
                  snapshot_date=snapshot_date, scored_at=None)


# ---------------------------------------------------------------- SIGKILL of the publisher


def _publish_then_hang(url: str, marker: str, n: int, policy: WritePolicy) -> None:
    """Publisher process: load generation 2's first n entities, touch `marker`, then hang."""
    def batches() -> Iterator[pa.RecordBatch]:
        yield from _batches(2, n, size=10_000)
        Path(marker).touch()
        time.sleep(600)
        yield from _batches(2, n + 10, lo=n)

    store.publish(url, batches(), _meta(2), keep=3, policy=policy)


def _start_publisher(url: str, tmp_path: Path, n: int, policy: WritePolicy) -> BaseProcess:
    marker = tmp_path / "loaded"
    process = SPAWN.Process(target=_publish_then_hang, args=(url, str(marker), n, policy),
                            daemon=True)
    process.start()
    _wait("the publisher to load its rows", lambda: marker.exists() or process.exitcode is not None,
          timeout=60)
    assert process.exitcode is None, f"publisher exited early with {process.exitcode}"
    return process


def _copy_backend(url: str, rows: int) -> int:
    """PostgreSQL: the backend running our COPY, once the server has received `rows` rows."""
    found: list[tuple[Any, ...]] = []

    def copied() -> bool:
        found[:] = _query(url, "SELECT p.pid, p.tuples_processed, a.query "
                               "FROM pg_stat_progress_copy AS p "
                               "JOIN pg_stat_activity AS a ON a.pid = p.pid "
                               "WHERE p.datname = current_database()")
        return bool(found) and found[0][1] >= rows

    _wait(f"the server to receive {rows} COPY rows", copied)
    (pid, _, query), = found
    assert query.startswith("COPY \"predictions_2\"") or query.startswith("COPY predictions_2")
    return int(pid)


def _backend_gone(url: str, pid: int) -> Callable[[], bool]:
    return lambda: not _query(url, "SELECT 1 FROM pg_stat_activity WHERE pid = :pid",
                              {"pid": pid})


def _kill(process: BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=10)
    assert process.exitcode == -signal.SIGKILL


@pytest.mark.timeout(120)
def test_publisher_killed_mid_load_leaves_served_snapshot_untouched(
    store_url: str, tmp_path: Path
) -> None:
    n = 20_000
    first = store.publish(store_url, _batches(1, n), _meta(1), keep=3)
    wal = Path(store_url.removeprefix("sqlite:///") + "-wal")
    wal_before = wal.stat().st_size if wal.exists() else 0  # SQLite only
    loaded = 60_000 if _is_pg(store_url) else 150_000  # SQLite: more than its page cache
    publisher = _start_publisher(store_url, tmp_path, loaded, WritePolicy())
    try:
        if _is_pg(store_url):
            backend = _copy_backend(store_url, _count(2, loaded))
        else:  # the half load reached the file (uncommitted WAL frames), not just memory
            assert wal.stat().st_size > wal_before + 1_000_000
        # mid-load: the new table and its control row are invisible; lookups serve the old one
        assert _snapshot_tables(store_url) == {"predictions_1"}
        assert _statuses(store_url) == [(1, "1", "published")]
        _assert_serves(store_url, first.snapshot_id, 1, n)
    finally:
        _kill(publisher)
    if _is_pg(store_url):
        _wait("the server to drop the killed publisher's session", _backend_gone(store_url,
                                                                                  backend))
    _assert_serves(store_url, first.snapshot_id, 1, n)
    assert _snapshot_tables(store_url) == {"predictions_1"}
    assert _statuses(store_url) == [(1, "1", "published")]  # nothing loading, nothing half done
    again = store.publish(store_url, _batches(3, n), _meta(3), keep=3)
    assert again.current
    _assert_serves(store_url, again.snapshot_id, 3, n)
    assert _snapshot_tables(store_url) == {"predictions_1", f"predictions_{again.snapshot_id}"}


def _count(k: int, n: int) -> int:
    return sum(1 for i in range(n) if _member(k, i))


def _long_reader(url: str) -> psycopg.Connection[Any]:
    """A session holding predictions_current (ACCESS SHARE) in an open transaction."""
    conn = psycopg.connect(libpq_conninfo(url))
    conn.execute("LOCK TABLE predictions_current IN ACCESS SHARE MODE")
    return conn


def _swap_waiting(url: str) -> list[int]:
    """Backends waiting for a lock on predictions_current (a swap queued behind readers)."""
    return [int(pid) for (pid,) in _query(
        url, "SELECT pid FROM pg_locks WHERE relation = to_regclass('predictions_current') "
             "AND NOT granted")]


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_publisher_killed_while_its_swap_waits_changes_nothing(pg_url: str) -> None:
    n = 5_000
    first = store.publish(pg_url, _batches(1, n), _meta(1), keep=3)
    reader = _long_reader(pg_url)
    try:
        policy = WritePolicy(lock_timeout_ms=1000, attempts=100)
        publisher = SPAWN.Process(target=_publish_whole, daemon=True,
                                  args=(pg_url, n, policy))
        publisher.start()
        try:
            waiting: list[int] = []

            def queued() -> bool:
                waiting[:] = _swap_waiting(pg_url)
                return bool(waiting)

            _wait("the swap to queue behind the reader", queued, timeout=60)
            (backend,) = waiting
        finally:
            _kill(publisher)
        # the orphaned backend gives up at its lock timeout, though the reader still holds on
        _wait("the server to drop the killed publisher's session",
              _backend_gone(pg_url, backend), timeout=15)
        assert reader.execute("SELECT count(*) FROM predictions_current").fetchone() == (
            _count(1, n),)
    finally:
        reader.close()
    _assert_serves(pg_url, first.snapshot_id, 1, n)
    assert _snapshot_tables(pg_url) == {"predictions_1"}
    assert _statuses(pg_url) == [(1, "1", "published")]
    again = store.publish(pg_url, _batches(3, n), _meta(3), keep=3)
    _assert_serves(pg_url, again.snapshot_id, 3, n)


def _publish_whole(url: str, n: int, policy: WritePolicy) -> None:
    """Publisher process: all of generation 2, so that it reaches the swap."""
    store.publish(url, _batches(2, n), _meta(2), keep=3, policy=policy)


# ---------------------------------------------------------------- exceptions during the swap


def _lookups_while(url: str, ids: list[str], running: threading.Event,
                   out: list[tuple[float, list[Lookup]]]) -> threading.Thread:
    """A thread doing lookups (latency, answers) while `running` is set."""
    def loop() -> None:
        with LookupClient(url) as client:
            while running.is_set():
                began = time.perf_counter()
                answers = client.get(ids)
                out.append((time.perf_counter() - began, answers))
                time.sleep(0.01)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_swap_blocked_by_a_long_reader_fails_cleanly_while_lookups_answer(pg_url: str) -> None:
    n = 5_000
    first = store.publish(pg_url, _batches(1, n), _meta(1), keep=3)
    ids = [_entity(i) for i in range(0, n, 100)] + ABSENT
    reader = _long_reader(pg_url)
    running = threading.Event()
    answered: list[tuple[float, list[Lookup]]] = []
    running.set()
    lookups = _lookups_while(pg_url, ids, running, answered)
    try:
        _wait("a first lookup", lambda: bool(answered))
        started = len(answered)
        with pytest.raises(SwapBlockedError) as blocked:
            store.publish(pg_url, _batches(2, n), _meta(2), keep=3,
                          policy=WritePolicy(lock_timeout_ms=100, attempts=3))
        during = len(answered) - started
        running.clear()
        lookups.join(timeout=10)
        holder = reader.info.backend_pid
        assert f"pid {holder} " in str(blocked.value)
        assert "3 attempts of 100 ms" in str(blocked.value)
    finally:
        running.clear()
        reader.close()
    assert during >= 3, f"only {during} lookups answered while the swap was blocked"
    for _, answers in answered:
        assert _check_answer(answers, {first.snapshot_id: 1}) == first.snapshot_id
    _assert_serves(pg_url, first.snapshot_id, 1, n)
    assert _snapshot_tables(pg_url) == {"predictions_1"}
    failed = store.snapshots(pg_url)[-1]
    assert (failed.model_version, failed.status, failed.table_name) == ("2", "failed", None)
    assert failed.note is not None and failed.note.startswith("SwapBlockedError: ")
    assert f"pid {holder} " in failed.note


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_swap_retries_until_the_long_reader_leaves(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    n = 5_000
    store.publish(pg_url, _batches(1, n), _meta(1), keep=3)
    reader = _long_reader(pg_url)
    released: list[float] = []

    def release_once_the_swap_waits() -> None:
        _wait("the swap to queue behind the reader", lambda: bool(_swap_waiting(pg_url)))
        time.sleep(0.25)
        reader.rollback()
        released.append(time.monotonic())

    releaser = threading.Thread(target=release_once_the_swap_waits, daemon=True)
    releaser.start()
    try:
        with caplog.at_level(logging.WARNING, logger="precast.store"):
            info = store.publish(pg_url, _batches(2, n), _meta(2), keep=3,
                                 policy=WritePolicy(lock_timeout_ms=100, attempts=10))
        releaser.join(timeout=10)
    finally:
        reader.close()
    assert released, "the reader was never released"
    retries = [r.getMessage() for r in caplog.records if "blocked by readers" in r.getMessage()]
    assert retries and "(attempt 1/10)" in retries[0], retries
    assert info.current and info.status == "published"
    _assert_serves(pg_url, info.snapshot_id, 2, n)
    assert _statuses(pg_url) == [(1, "1", "published"), (2, "2", "published")]


_FAULT_TRIGGER = {
    "postgresql": [
        "CREATE FUNCTION precast_fault() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'injected fault in the swap'; END $$",
        "CREATE TRIGGER precast_fault BEFORE INSERT ON prediction_activations "
        "FOR EACH ROW EXECUTE FUNCTION precast_fault()",
    ],
    "sqlite": [
        "CREATE TRIGGER precast_fault BEFORE INSERT ON prediction_activations "
        "BEGIN SELECT RAISE(ABORT, 'injected fault in the swap'); END",
    ],
}


@pytest.mark.timeout(120)
def test_fault_in_the_last_statement_of_the_swap_rolls_everything_back(store_url: str) -> None:
    """The view is already repointed when the activation insert fails: all of it rolls back."""
    n = 5_000
    first = store.publish(store_url, _batches(1, n), _meta(1), keep=3)
    engine = store.make_engine(store_url)
    try:
        with engine.begin() as conn:
            for stmt in _FAULT_TRIGGER[conn.dialect.name]:
                conn.exec_driver_sql(stmt)
        with pytest.raises(sa.exc.DBAPIError, match="injected fault in the swap"):
            store.publish(engine, _batches(2, n), _meta(2), keep=3)
        _assert_serves(store_url, first.snapshot_id, 1, n)
        assert _snapshot_tables(store_url) == {"predictions_1"}
        failed = store.snapshots(engine)[-1]
        assert (failed.model_version, failed.status) == ("2", "failed")
        assert failed.note is not None and "injected fault in the swap" in failed.note
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER precast_fault" + (
                " ON prediction_activations" if conn.dialect.name == "postgresql" else ""))
        again = store.publish(engine, _batches(3, n), _meta(3), keep=3)
    finally:
        engine.dispose()
    _assert_serves(store_url, again.snapshot_id, 3, n)


@pytest.mark.timeout(120)
def test_contract_break_in_the_last_batch_leaves_nothing_behind(store_url: str) -> None:
    n = 30_000
    first = store.publish(store_url, _batches(1, n), _meta(1), keep=3)

    def duplicate_at_the_end() -> Iterator[pa.RecordBatch]:
        yield from _batches(2, n, size=10_000)
        yield next(_batches(2, 20, size=20))  # ids already loaded: found only at the key step

    with pytest.raises(DuplicateEntityError, match="duplicate entity_id 'e000000'"):
        store.publish(store_url, duplicate_at_the_end(), _meta(2), keep=3)
    _assert_serves(store_url, first.snapshot_id, 1, n)
    assert _snapshot_tables(store_url) == {"predictions_1"}
    assert [(v, s) for _, v, s in _statuses(store_url)] == [("1", "published"), ("2", "failed")]
    note = store.snapshots(store_url)[-1].note
    assert note is not None and note.startswith("DuplicateEntityError: duplicate entity_id")
    again = store.publish(store_url, _batches(3, n), _meta(3), keep=3)
    _assert_serves(store_url, again.snapshot_id, 3, n)
