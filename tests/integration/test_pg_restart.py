"""PostgreSQL itself restarted under the pipeline, on a private cluster started for this module.

- A crash (`pg_ctl stop -m immediate`) or a fast shutdown in the middle of a publish's load:
  the publisher fails with a retryable error, the snapshot served before is served whole, no
  table of the attempt is left, its control row says `failed` and why, and a rerun publishes.
- A crash, or the loss of the publisher's session, after the server made a publish's COMMIT
  durable but before it answered: the publish is not reported failed when the store says it
  is published, and a retry of the step finds it served (it is not published twice).
- A crash while a rollback's swap waits behind a reader: nothing changes; its retry serves
  the target whole, with one rollback in the serving history.
- Lookup clients (LookupClient, and the HTTP API's AsyncLookupClient) under load while the
  server crashes or shuts down: they never answer wrong or partly, and answer again by
  themselves within seconds, with the same client objects.
- `precast serve` (HTTP) under load through a crash: 503 database_unavailable (never a 500
  nor a wrong answer) while the server is down, 200 again by itself within seconds.
- Monitoring while the store is down or crashes mid-transaction: the step's retry records
  every alert exactly once and sends it once; metrics are replaced, not doubled. An alert
  whose COMMIT was durable but unanswered is recorded once and sent by the step's retry.

The cluster is made with `initdb` into a temporary folder and listens on a free port of
127.0.0.1 (trust authentication). PostgreSQL refuses to run as root: under root the cluster
is run as the `postgres` user (runuser); without one the module skips, unless
PRECAST_TEST_REQUIRE_POSTGRES=1.

Every snapshot is built so that its rows name it: generation k holds the ids `e<i>`,
i < n, with score `k + i / 1e7` and fallback score `k + 0.5`.

    .venv/bin/pytest tests/integration/test_pg_restart.py -p no:randomly
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn, Protocol, cast

import httpx
import numpy as np
import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.config import Config
from precast.errors import retryable
from precast.monitoring import alerts, model_metrics
from precast.monitoring.alerts import Alert
from precast.monitoring.model_metrics import MetricRow
from precast.serving.lookup import AsyncLookupClient, Lookup, LookupClient
from precast.store import SnapshotMeta
from tests.helpers import _pg_required

pytestmark = [pytest.mark.postgres, pytest.mark.slow(minutes=1), pytest.mark.timeout(180)]

DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 30, tzinfo=UTC)
PRECAST = Path(sys.executable).parent / "precast"
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


# ---------------------------------------------------------------- a private cluster


def _pg_tool(name: str) -> str | None:
    """`initdb` or `pg_ctl`: on PATH, else from the newest /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name)
    if found:
        return found
    return next((str(d / name) for d in PG_BIN_DIRS if (d / name).exists()), None)


def _unavailable(reason: str) -> NoReturn:
    """Skip with `reason`, or fail when PostgreSQL tests are required (CI)."""
    if _pg_required():
        pytest.fail(f"PRECAST_TEST_REQUIRE_POSTGRES is set, but {reason}")
    pytest.skip(reason)


def _as_owner() -> tuple[list[str], int | None]:
    """The command prefix that runs the server's tools as a non-root user, and its uid."""
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam("postgres")
    except KeyError:
        _unavailable("running as root, and PostgreSQL refuses root: no 'postgres' user to run "
                     "a private cluster as")
    runuser = shutil.which("runuser")
    if not runuser:
        _unavailable("running as root, and PostgreSQL refuses root: no runuser to run a "
                     "private cluster as the 'postgres' user")
    return [runuser, "-u", "postgres", "--"], owner.pw_uid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A private PostgreSQL cluster: its data folder, port and socket folder."""

    root: Path
    port: int
    as_owner: list[str]
    pg_ctl: str
    restarts: list[float] = field(default_factory=list)  # monotonic time each start ended

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        done = subprocess.run([*self.as_owner, self.pg_ctl, "-D", str(self.data), *args],
                              capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, (f"pg_ctl {' '.join(args)} exited {done.returncode}: "
                                      f"{done.stdout}{done.stderr}\n{self.log_tail()}")

    def start(self) -> None:
        """Start; a hold on commits (hold_commits) does not survive a restart."""
        auto = self.data / "postgresql.auto.conf"
        if auto.exists():  # rewritten in place: the file keeps its owner
            kept = [line for line in auto.read_text().splitlines(keepends=True)
                    if not line.startswith("synchronous_standby_names")]
            auto.write_text("".join(kept))
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c max_connections=60")
        self._ctl("-o", options, "-l", str(self.root / "server.log"), "-w", "-t", "30",
                  "start")
        self.restarts.append(time.monotonic())

    def stop(self, mode: str = "fast") -> None:
        """`immediate`: every server process is killed (a crash; recovery at the next start)."""
        self._ctl("-m", mode, "-w", "-t", "30", "stop")

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> None:
        """Stop (`fast` or `immediate`), stay down `down_s` seconds, start again."""
        assert mode in {"fast", "immediate"}, mode
        self.stop(mode)
        time.sleep(down_s)
        self.start()

    def hold_commits(self) -> None:
        """From now on every COMMIT that wrote is made durable, then waits for a synchronous
        standby that never comes: the transaction is committed (recovery keeps it), but its
        client never hears so, and other sessions do not see it, until the wait ends (at a
        restart, or when that session ends). Lifted by release_commits and by every start."""
        _admin(self, "ALTER SYSTEM SET synchronous_standby_names = 'precast_nobody'")
        _admin(self, "SELECT pg_reload_conf()")
        _wait("the hold on commits", lambda: _admin(
            self, "SHOW synchronous_standby_names") == [("precast_nobody",)])
        time.sleep(0.5)  # the checkpointer publishes the new setting to every backend

    def release_commits(self) -> None:
        """Lift the hold of hold_commits (the waiting COMMITs return)."""
        _admin(self, "ALTER SYSTEM RESET synchronous_standby_names")
        _admin(self, "SELECT pg_reload_conf()")

    def waiting_commits(self) -> list[str]:
        """The statements of sessions waiting for the standby (their COMMIT is durable)."""
        return [q for (q,) in _admin(self, "SELECT query FROM pg_stat_activity "
                                           "WHERE wait_event = 'SyncRep'")]

    def log_tail(self, lines: int = 20) -> str:
        path = self.root / "server.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh cluster made with initdb (trust authentication), stopped at the end."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        _unavailable("initdb and pg_ctl are not on PATH nor in /usr/lib/postgresql/*/bin")
    as_owner, uid = _as_owner()
    # not pytest's tmp_path: its folders are private to the test user (the server may run as
    # another one), and a socket path must stay short
    root = Path(tempfile.mkdtemp(prefix="precast-pg-"))
    if uid is not None:
        os.chown(root, uid, -1)
    done = subprocess.run([*as_owner, initdb, "-D", str(root / "data"), "-A", "trust",
                           "-U", "postgres", "-E", "UTF8", "--no-sync"],
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        _unavailable(f"initdb failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    running = Cluster(root, _free_port(), as_owner, pg_ctl)
    try:
        running.start()
        yield running
    finally:
        try:
            running.stop("immediate")
        except AssertionError:
            pass  # already stopped (a failed restart); the folder goes anyway
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def restart_url(cluster: Cluster) -> Iterator[str]:
    """A fresh database in the private cluster, for one test."""
    name = f"precast_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    yield cluster.url(name)
    cluster.release_commits()  # a test that failed while commits were held frees the next


def _admin(cluster: Cluster, sql: str) -> list[tuple[Any, ...]]:
    """Run one statement as the superuser (autocommit); its rows."""
    engine = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.exec_driver_sql(sql)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()


# ---------------------------------------------------------------- snapshots that name themselves


def _entity(i: int) -> str:
    return f"e{i:07d}"


def _batches(k: int, n: int, size: int = 20_000) -> Iterator[pa.RecordBatch]:
    for start in range(0, n, size):
        i = np.arange(start, min(start + size, n))
        yield pa.RecordBatch.from_pydict({
            "entity_id": pa.array([_entity(int(x)) for x in i], pa.string()),
            "score": pa.array(k + i / 1e7, pa.float64()),
            "scored_at": pa.array(np.full(len(i), SCORED_AT), pa.timestamp("us", tz="UTC")),
        })


def _meta(k: int) -> SnapshotMeta:
    return SnapshotMeta(snapshot_date=DAY, model_name="churn", model_version=str(k),
                        data_version=f"data-{k}", fallback_score=k + 0.5)


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def _assert_serves(url: str, snapshot_id: int, k: int, n: int) -> None:
    """The view serves generation k, all n rows and nothing else, as `snapshot_id`."""
    served = store.current(url)
    assert served is not None
    assert (served.snapshot_id, served.model_version, served.row_count, served.status) == (
        snapshot_id, str(k), n, "published")
    assert _query(url, "SELECT DISTINCT snapshot_id FROM predictions_current") == [
        (snapshot_id,)]
    rows = _query(url, "SELECT entity_id, score FROM predictions_current")
    assert len(rows) == n
    assert dict(rows) == {_entity(i): k + i / 1e7 for i in range(n)}


def _snapshot_tables(url: str) -> set[str]:
    engine = store.make_engine(url)
    try:
        return {t for t in sa.inspect(engine).get_table_names() if t.startswith("predictions_")}
    finally:
        engine.dispose()


def _statuses(url: str) -> list[tuple[int, str, str]]:
    return [(s.snapshot_id, s.model_version, s.status) for s in store.snapshots(url)]


def _wait(what: str, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.02)


def _copied_rows(url: str) -> int:
    """Rows the server has received from the COPY in progress in this database (0: none)."""
    rows = _query(url, "SELECT tuples_processed FROM pg_stat_progress_copy "
                       "WHERE datname = current_database()")
    return int(rows[0][0]) if rows else 0


# ---------------------------------------------------------------- retried steps, blocked sessions


def _retried(call: Callable[[], Any], errors: list[BaseException], attempts: int = 20,
             pause_s: float = 0.25) -> Any:
    """What the orchestrator does with a failing step: retry it while retryable."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            errors.append(exc)
            if not retryable(exc) or attempt == attempts:
                raise
            time.sleep(pause_s)
    raise AssertionError("unreachable")


@dataclass
class Retrying:
    """A step retried in a thread (see _retried): its result, and each attempt's error."""

    thread: threading.Thread
    result: list[Any]
    errors: list[BaseException]


def _retrying(call: Callable[[], Any]) -> Retrying:
    result: list[Any] = []
    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: result.append(_retried(call, errors)), daemon=True)
    thread.start()
    return Retrying(thread, result, errors)


def _locked_out(url: str, table: str, mode: str = "EXCLUSIVE") -> tuple[sa.Engine, Any]:
    """A session holding `table` in `mode` in an open transaction (EXCLUSIVE: writers wait
    behind it; ACCESS SHARE: a swap of the view waits)."""
    engine = store.make_engine(url)
    conn = engine.connect()
    conn.begin()
    conn.exec_driver_sql(f"LOCK TABLE {table} IN {mode} MODE")
    return engine, conn


def _waiting_on(url: str, table: str) -> Callable[[], bool]:
    """True once a session waits for a lock on `table`."""
    return lambda: bool(_query(url, f"SELECT 1 FROM pg_locks WHERE NOT granted AND "
                                    f"relation = to_regclass('{table}')"))


# ---------------------------------------------------------------- restart during a publish


@dataclass
class Attempt:
    """A publish running in a thread, held after `hold_after` rows until `go` is set."""

    thread: threading.Thread
    held: threading.Event
    go: threading.Event
    error: list[BaseException]
    info: list[store.SnapshotInfo]


def _publish_in_thread(url: str, k: int, n: int, hold_after: int) -> Attempt:
    held, go = threading.Event(), threading.Event()
    error: list[BaseException] = []
    info: list[store.SnapshotInfo] = []

    def batches() -> Iterator[pa.RecordBatch]:
        sent = 0
        for batch in _batches(k, n):
            yield batch
            sent += batch.num_rows
            if sent >= hold_after and not held.is_set():
                held.set()
                go.wait(timeout=60)

    def run() -> None:
        try:
            info.append(store.publish(url, batches(), _meta(k), keep=3, rows_if_served=n))
        except BaseException as exc:  # the test judges it
            error.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return Attempt(thread, held, go, error, info)


@pytest.mark.parametrize("mode", ["immediate", "fast"])
def test_restart_mid_load_fails_the_publish_retryably_and_leaves_the_served_snapshot_whole(
    cluster: Cluster, restart_url: str, mode: str
) -> None:
    n1, n2 = 100_000, 200_000
    first = store.publish(restart_url, _batches(1, n1), _meta(1), keep=3)
    attempt = _publish_in_thread(restart_url, 2, n2, hold_after=100_000)
    try:
        _wait("the publisher to send half its rows", attempt.held.is_set)
        _wait("the server to receive them", lambda: _copied_rows(restart_url) >= 60_000)
        cluster.restart(mode)
    finally:
        attempt.go.set()
        attempt.thread.join(timeout=60)
    assert not attempt.thread.is_alive(), "the publisher hangs after the restart"
    assert attempt.info == [], "the publish reported success across a restart"
    (error,) = attempt.error
    print(f"publisher failed with {error!r}; control rows {_statuses(restart_url)}")
    assert retryable(error), f"not retryable: {error!r}"
    assert isinstance(error, sa.exc.OperationalError), repr(error)  # the driver's, wrapped
    assert "connection" in str(error), error
    _assert_serves(restart_url, first.snapshot_id, 1, n1)
    assert _snapshot_tables(restart_url) == {first.table_name}
    # the server was up again when the publisher failed: the attempt is recorded as failed,
    # with why (not only "the connection is lost", which the failed rollback said last)
    kept, failed = store.snapshots(restart_url)
    assert (kept.snapshot_id, kept.status, failed.model_version, failed.status) == (
        first.snapshot_id, "published", "2", "failed")
    assert failed.table_name is None and failed.note is not None
    assert "server closed the connection unexpectedly" in failed.note, failed.note
    again = store.publish(restart_url, _batches(2, n2), _meta(2), keep=3, rows_if_served=n2)
    _assert_serves(restart_url, again.snapshot_id, 2, n2)
    assert _snapshot_tables(restart_url) == {first.table_name, again.table_name}


def _commit_held(cluster: Cluster, url: str, n1: int, n2: int) -> tuple[store.SnapshotInfo,
                                                                        Attempt]:
    """Snapshot 1 served, then a publish of generation 2 whose COMMIT is durable and waits
    unacknowledged (see Cluster.hold_commits)."""
    first = store.publish(url, _batches(1, n1), _meta(1), keep=3)
    attempt = _publish_in_thread(url, 2, n2, hold_after=n2)  # held after its last batch
    _wait("the publisher to send every row", attempt.held.is_set)
    cluster.hold_commits()
    attempt.go.set()
    _wait("the publish's COMMIT to wait", lambda: bool(cluster.waiting_commits()))
    assert cluster.waiting_commits() == ["COMMIT"]
    return first, attempt


def test_a_crash_before_the_publish_commit_is_acknowledged_is_not_published_twice(
    cluster: Cluster, restart_url: str
) -> None:
    n1, n2 = 20_000, 50_000
    first, attempt = _commit_held(cluster, restart_url, n1, n2)
    try:
        cluster.restart("immediate", down_s=1.0)
    finally:
        attempt.thread.join(timeout=60)
    # the publisher asks at once, while the store is down: it cannot know, and fails
    # retryably (had it been slower than the restart, it would have found the answer)
    assert len(attempt.error) + len(attempt.info) == 1
    assert all(retryable(error) for error in attempt.error), attempt.error
    served = store.current(restart_url)  # but the commit was durable: recovery kept it
    assert served is not None and served.snapshot_id != first.snapshot_id
    assert attempt.info in ([], [served])
    _assert_serves(restart_url, served.snapshot_id, 2, n2)
    again = store.publish(restart_url, _batches(2, n2), _meta(2), keep=3, rows_if_served=n2)
    assert again == served  # the retry of the step finds it served: no second copy
    assert _snapshot_tables(restart_url) == {first.table_name, served.table_name}
    assert _statuses(restart_url) == [(first.snapshot_id, "1", "published"),
                                      (served.snapshot_id, "2", "published")]


def test_a_publish_whose_commit_answer_is_lost_reports_the_snapshot_it_published(
    cluster: Cluster, restart_url: str
) -> None:
    n1, n2 = 20_000, 50_000
    first, attempt = _commit_held(cluster, restart_url, n1, n2)
    try:  # the publisher's session dies after its COMMIT was made durable, the server lives
        _admin(cluster, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE wait_event = 'SyncRep'")
        attempt.thread.join(timeout=10)  # the publisher's next writes would wait too
    finally:
        cluster.restart("fast")  # lifts the hold
        attempt.thread.join(timeout=60)
    print(f"publisher: {attempt.error or attempt.info}")
    served = store.current(restart_url)
    assert served is not None and served.snapshot_id != first.snapshot_id
    _assert_serves(restart_url, served.snapshot_id, 2, n2)
    assert attempt.error == []  # not a failure, and no "failed" row claiming nothing changed
    assert attempt.info == [served]
    assert _statuses(restart_url) == [(first.snapshot_id, "1", "published"),
                                      (served.snapshot_id, "2", "published")]


def test_a_rollback_interrupted_by_a_crash_changes_nothing_and_its_retry_serves(
    cluster: Cluster, restart_url: str
) -> None:
    n = 20_000
    first = store.publish(restart_url, _batches(1, n), _meta(1), keep=3)
    second = store.publish(restart_url, _batches(2, n), _meta(2), keep=3)
    engine, reader = _locked_out(restart_url, "predictions_current", "ACCESS SHARE")
    rollback = _retrying(lambda: store.activate(
        restart_url, first.snapshot_id, by="test", reason="crash proof",
        policy=store.WritePolicy(lock_timeout_ms=200, attempts=100)))
    try:  # its swap waits behind the reader when the server crashes
        _wait("the rollback's swap to wait", _waiting_on(restart_url, "predictions_current"))
        cluster.restart("immediate")
    finally:
        rollback.thread.join(timeout=60)
        reader.invalidate()
        engine.dispose()
    assert rollback.errors and all(retryable(e) for e in rollback.errors), rollback.errors
    assert [info.snapshot_id for info in rollback.result] == [first.snapshot_id]  # retried
    _assert_serves(restart_url, first.snapshot_id, 1, n)
    assert _query(restart_url, "SELECT snapshot_id, previous_snapshot_id, action "
                               "FROM prediction_activations ORDER BY activation_id") == [
        (first.snapshot_id, None, "publish"), (second.snapshot_id, first.snapshot_id, "publish"),
        (first.snapshot_id, second.snapshot_id, "rollback")]


# ---------------------------------------------------------------- restart under lookup load


LOOKUP_THREADS = 4
RECOVERY_S = 5.0  # the server answers again: every thread must, within this


@dataclass
class Outcome:
    """What one lookup call gave: when it ended, and its error (None: a checked answer)."""

    at: float
    error: str | None


def _check(answers: list[Any], ids: list[str], snapshot_id: int, k: int, n: int) -> None:
    """Every answer is generation k's, from `snapshot_id`, one per id in order."""
    assert [a.entity_id for a in answers] == ids, (ids, answers)
    for a in answers:
        i = int(a.entity_id[1:]) if a.entity_id.startswith("e") else n
        assert (a.snapshot_id, a.model_version) == (snapshot_id, str(k)), a
        if i < n:
            assert (a.fallback, a.score) == (False, k + i / 1e7), a
        else:
            assert (a.fallback, a.score) == (True, k + 0.5), a


class Lookups(Protocol):
    """What the lookup threads call: LookupClient, or the API's client through ApiClient."""

    def get_one(self, entity_id: str) -> Lookup: ...

    def get(self, ids: Sequence[str]) -> list[Lookup]: ...


class ApiClient:
    """The HTTP API's AsyncLookupClient (coalesced get_one) on an event loop of its own,
    called from threads."""

    def __init__(self, url: str, pool_size: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = AsyncLookupClient(url, pool_size=pool_size, concurrency=2)
        self._run(self.client.open())

    def _run(self, call: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=60)

    def get_one(self, entity_id: str) -> Lookup:
        return cast(Lookup, self._run(self.client.get_one(entity_id)))

    def get(self, ids: Sequence[str]) -> list[Lookup]:
        return cast(list[Lookup], self._run(self.client.get(ids)))

    def close(self) -> None:
        self._run(self.client.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@contextmanager
def _client(kind: str, url: str) -> Iterator[Lookups]:
    client: LookupClient | ApiClient = (
        LookupClient(url, pool_size=LOOKUP_THREADS) if kind == "client"
        else ApiClient(url, pool_size=LOOKUP_THREADS))
    try:
        yield client
    finally:
        client.close()


def _lookup_loop(client: Lookups, seed: int, snapshot_id: int, n: int,
                 stop: threading.Event, out: list[Outcome], wrong: list[str]) -> None:
    """get_one and get (with an absent id) in turn until `stop`; every answer checked."""
    rng = np.random.default_rng(seed)
    calls = 0
    while not stop.is_set():
        ids = [_entity(int(i)) for i in rng.integers(0, n, 8)] + ["nobody"]
        calls += 1
        try:
            answers = [client.get_one(ids[0])] if calls % 2 else client.get(ids)
        except Exception as exc:  # counted: the test judges when they stop
            out.append(Outcome(time.monotonic(), f"{type(exc).__name__}: {exc}"[:200]))
            time.sleep(0.01)
            continue
        try:
            _check(answers, ids[:1] if calls % 2 else ids, snapshot_id, 1, n)
        except AssertionError as exc:
            wrong.append(str(exc)[:500])
        out.append(Outcome(time.monotonic(), None))


def _answered_since(up: float, outcomes: list[list[Outcome]]) -> Callable[[], bool]:
    return lambda: all(any(o.error is None and o.at > up for o in out) for out in outcomes)


@pytest.mark.parametrize(("mode", "kind"), [
    ("immediate", "client"), ("fast", "client"), ("immediate", "api")])
def test_lookups_never_answer_wrong_and_recover_by_themselves_after_a_restart(
    cluster: Cluster, restart_url: str, mode: str, kind: str
) -> None:
    n = 50_000
    first = store.publish(restart_url, _batches(1, n), _meta(1), keep=3)
    stop = threading.Event()
    outcomes: list[list[Outcome]] = [[] for _ in range(LOOKUP_THREADS)]
    wrong: list[str] = []
    up, recovered = time.monotonic(), False
    with _client(kind, restart_url) as client:  # one client for every thread, never remade
        threads = [threading.Thread(target=_lookup_loop, daemon=True, args=(
            client, seed, first.snapshot_id, n, stop, outcomes[seed], wrong))
            for seed in range(LOOKUP_THREADS)]
        for thread in threads:
            thread.start()
        try:
            _wait("every thread to answer", lambda: all(
                sum(o.error is None for o in out) >= 20 for out in outcomes))
            cluster.restart(mode, down_s=1.0)
            up = cluster.restarts[-1]
            try:
                _wait("every thread to answer again", _answered_since(up, outcomes),
                      timeout=RECOVERY_S)
                recovered = True
            except AssertionError:
                pass
            time.sleep(0.5)  # and keep answering
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    for r, out in enumerate(outcomes):
        failures = [o.error for o in out if o.error is not None]
        firsts = [round(o.at - up, 2) for o in out if o.error is None and o.at > up][:1]
        print(f"{kind} thread {r}: {len(out) - len(failures)} answers, {len(failures)} "
              f"failures, first answer {firsts} s after the server was up; "
              f"failures: {sorted(set(failures))[:4]}")
    assert wrong == [], f"{len(wrong)} wrong answers: {wrong[:3]}"
    assert all(not t.is_alive() for t in threads)
    assert recovered, f"lookups did not answer again within {RECOVERY_S} s of the server's start"
    for r, out in enumerate(outcomes):
        late = [o for o in out if o.error is not None and o.at > up + RECOVERY_S]
        assert late == [], f"thread {r} still failed {len(late)} times after recovering"


@contextmanager
def _precast_serve(root: Path, url: str) -> Iterator[httpx.Client]:
    """`precast serve` on a free port reading `url` (public schema); an HTTP client for it.
    Stopped with SIGTERM at the end; its log must hold no traceback."""
    port = _free_port()
    config = root / "precast.yaml"
    config.write_text("serve:\n  host: 127.0.0.1\nstores:\n  schema: public\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PRECAST_") or k.startswith("PRECAST_TEST_")}
    env.update(PRECAST_CONFIG=str(config), PRECAST_HOME=str(root / "home"),
               PRECAST_STORES__PREDICTIONS_URL=url)
    log_path = root / "serve.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([str(PRECAST), "serve", "--port", str(port)], cwd=root,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
    try:
        _wait("precast serve to answer", lambda: _answers(http, proc))
        yield http
    finally:
        http.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        log = log_path.read_text(errors="replace")
        assert "Traceback" not in log, log


def _answers(http: httpx.Client, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, f"precast serve exited with {proc.returncode}"
    try:
        http.get("/ready")  # a 404 that needs no database
        return True
    except httpx.TransportError:
        return False


def _http_loop(http: httpx.Client, seed: int, snapshot_id: int, n: int,
               stop: threading.Event, out: list[Outcome], wrong: list[str]) -> None:
    """GET one and POST batchGet in turn until `stop`; a 200 is checked, a 503 that says the
    database is unavailable is an outage, anything else is wrong."""
    rng = np.random.default_rng(seed)
    calls = 0
    while not stop.is_set():
        ids = [_entity(int(i)) for i in rng.integers(0, n, 8)] + ["nobody"]
        calls += 1
        response = (http.get(f"/v1/predictions/{ids[0]}") if calls % 2 else
                    http.post("/v1/predictions:batchGet", json={"ids": ids}))
        if response.status_code == 503 and response.json()["error"]["code"] == (
                "database_unavailable"):
            out.append(Outcome(time.monotonic(), "503 database_unavailable"))
            time.sleep(0.01)
            continue
        try:
            assert response.status_code == 200, (response.status_code, response.text)
            body = response.json()
            answers = [body] if calls % 2 else body["predictions"]
            _check([SimpleNamespace(**a) for a in answers], ids[:1] if calls % 2 else ids,
                   snapshot_id, 1, n)
        except AssertionError as exc:
            wrong.append(str(exc)[:500])
        out.append(Outcome(time.monotonic(), None))


def test_the_http_api_answers_503_during_a_crash_and_200_again_by_itself(
    cluster: Cluster, restart_url: str, tmp_path: Path
) -> None:
    n = 20_000
    first = store.publish(restart_url, _batches(1, n), _meta(1), keep=3)
    stop = threading.Event()
    outcomes: list[list[Outcome]] = [[] for _ in range(LOOKUP_THREADS)]
    wrong: list[str] = []
    up = time.monotonic()
    with _precast_serve(tmp_path, restart_url) as http:
        threads = [threading.Thread(target=_http_loop, daemon=True, args=(
            http, seed, first.snapshot_id, n, stop, outcomes[seed], wrong))
            for seed in range(LOOKUP_THREADS)]
        for thread in threads:
            thread.start()
        try:
            _wait("every thread to answer", lambda: all(
                sum(o.error is None for o in out) >= 10 for out in outcomes))
            cluster.restart("immediate", down_s=1.0)
            up = cluster.restarts[-1]
            _wait("every thread to answer again", _answered_since(up, outcomes),
                  timeout=RECOVERY_S)
            time.sleep(0.5)  # and keep answering
            health = http.get("/healthz")
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
    for r, out in enumerate(outcomes):
        outages = [o for o in out if o.error is not None]
        firsts = [round(o.at - up, 2) for o in out if o.error is None and o.at > up][:1]
        print(f"http thread {r}: {len(out) - len(outages)} answers, {len(outages)} 503s, "
              f"first answer {firsts} s after the server was up")
    assert wrong == [], f"{len(wrong)} wrong answers: {wrong[:3]}"
    assert (health.status_code, health.json()["snapshot_id"]) == (200, first.snapshot_id)
    for r, out in enumerate(outcomes):
        late = [o for o in out if o.error is not None and o.at > up + RECOVERY_S]
        assert late == [], f"thread {r} still got 503 {len(late)} times after recovering"


# ---------------------------------------------------------------- restart during monitoring


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An alert webhook receiver on a free port: its URL and the JSON bodies it got."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def _monitor_cfg(tmp_path: Path, url: str, hook_url: str) -> Config:
    return Config(home=tmp_path / "home").with_overrides(
        {"stores.predictions_url": url, "monitor.webhook_url": hook_url})


def _alert(rule: str, subject: str) -> Alert:
    return Alert(DAY, rule, subject, f"{subject}: {rule} breached", 0.3, 0.2)


def _keys(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["rule"], r["subject"]) for r in rows]


def _metric_rows(cfg: Config) -> list[tuple[Any, ...]]:
    return _query(cfg.predictions_url, "SELECT kind, feature, metric, value FROM model_metrics "
                                       "ORDER BY kind, feature, metric")


def test_monitoring_loses_no_alert_nor_metric_when_the_store_restarts(
    cluster: Cluster, restart_url: str, tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    hook_url, sent = webhook
    cfg = _monitor_cfg(tmp_path, restart_url, hook_url)
    drift = [MetricRow("plan", "psi", 0.31), MetricRow("score", "psi", 0.05)]
    first = _alert("drift_psi_max", "plan")
    assert alerts.raise_alerts(cfg, [first]) == [first]
    errors: list[BaseException] = []

    # 1. the store is down when the step runs; it comes back while the step retries
    cluster.stop("immediate")
    starter = threading.Timer(1.0, cluster.start)
    starter.start()
    try:
        down = _alert("drift_psi_max", "device")
        assert _retried(lambda: alerts.raise_alerts(cfg, [first, down]), errors) == [down]
        assert _retried(lambda: model_metrics.write_metrics(cfg, DAY, "1", "drift", drift),
                        errors) == 2
    finally:
        starter.join()
    assert errors and all(retryable(e) for e in errors)
    print(f"store down: {len(errors)} failed attempts, first {errors[0]!r}"[:300])

    # 2. the store crashes while the step's transaction waits to write
    for table, step in (
        ("alerts", lambda: alerts.raise_alerts(cfg, [down, _alert("min_roc_auc", "score")])),
        ("model_metrics", lambda: model_metrics.write_metrics(cfg, DAY, "1", "drift", drift)),
    ):
        engine, holder = _locked_out(cfg.predictions_url, table)
        worker = _retrying(step)
        try:
            _wait(f"the step to wait for {table}", _waiting_on(cfg.predictions_url, table))
            cluster.restart("immediate")
        finally:
            worker.thread.join(timeout=60)
            holder.invalidate()
            engine.dispose()
        assert worker.errors and all(retryable(e) for e in worker.errors), worker.errors
        print(f"crash mid-transaction on {table}: {worker.errors[0]!r}"[:300])
        assert worker.result == ([[_alert("min_roc_auc", "score")]] if table == "alerts" else [2])

    # every alert once in the table, and sent once; the metrics replaced, not doubled
    expected = [("drift_psi_max", "plan"), ("drift_psi_max", "device"), ("min_roc_auc", "score")]
    assert _keys(alerts.alerts_of(cfg)) == expected
    assert _keys(sent) == expected
    assert _metric_rows(cfg) == [("drift", "plan", "psi", 0.31), ("drift", "score", "psi", 0.05)]


def test_an_alert_whose_commit_was_never_acknowledged_is_recorded_once_and_still_sent(
    cluster: Cluster, restart_url: str, tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    hook_url, sent = webhook
    cfg = _monitor_cfg(tmp_path, restart_url, hook_url)
    model_metrics.write_metrics(cfg, DAY, "1", "drift", [])  # the schema exists before the hold
    lost = _alert("drift_psi_max", "plan")
    cluster.hold_commits()
    worker = _retrying(lambda: alerts.raise_alerts(cfg, [lost]))
    try:
        _wait("the alert's COMMIT to wait", lambda: bool(cluster.waiting_commits()))
        assert cluster.waiting_commits() == ["COMMIT"]
        cluster.restart("immediate", down_s=0.5)
    finally:
        worker.thread.join(timeout=60)
    assert worker.errors and all(retryable(e) for e in worker.errors), worker.errors
    assert _keys(alerts.alerts_of(cfg)) == [("drift_psi_max", "plan")]  # durable, once
    print(f"the retry returned {worker.result}; the webhook got {sent}")
    assert _keys(sent) == [("drift_psi_max", "plan")], sent  # sent by the retry, once
