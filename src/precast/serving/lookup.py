"""Lookup clients: scores for entity ids, read from the `predictions_current` view only.

    with LookupClient(cfg.predictions_url) as client:
        hit = client.get_one("u1")            # a Lookup; fallback=True = no prediction
        hits = client.get(["u1", "u2"])       # one Lookup per id, in request order

Every call is ONE SQL statement, so all of its answers come from one snapshot even while a
publish or rollback swaps the view. On PostgreSQL the clients talk psycopg 3 directly (a
connection pool, autocommit, server-side prepared statements): one round trip per lookup.
An entity with no prediction gets `fallback=True` and the fallback score: the one given to
the client, else the served snapshot's: the training mean of the label of the model that
scored it (binary: the label rate; regression: the mean label, in the label's units).
:class:`AsyncLookupClient` is the same for asyncio (the HTTP API).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.resources import statement as _statement
from precast.store import (
    CURRENT_VIEW,
    SNAPSHOTS_TABLE,
    NoSnapshotError,
    as_date,
    as_utc,
    make_engine,
)

__all__ = ["AsyncLookupClient", "Lookup", "LookupClient", "NoSnapshotError", "ServedSnapshot",
           "SessionLimits", "login_problem"]

log = logging.getLogger(__name__)
_BIND = re.compile(r"(?<![:\w]):(\w+)")
# Every lookup connection: one statement per round trip (autocommit), prepared on first use,
# read-only at the server too (a lookup can never write, whatever role it logs in as), and
# named in pg_stat_activity.
_SESSION = {"autocommit": True, "prepare_threshold": 0, "application_name": "precast-lookup",
            "options": "-c default_transaction_read_only=on"}


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on every session of a client: PostgreSQL statements are cancelled by the
    server past `statement_timeout_ms`, a connection attempt gives up past
    `connect_timeout_s`, and TCP keepalives (from `keepalives_idle_s` of silence) find a dead
    peer; a SQLite statement waits `busy_timeout_ms` for a lock."""

    statement_timeout_ms: int = 2000
    connect_timeout_s: int = 3
    keepalives_idle_s: int = 30
    busy_timeout_ms: int = 1000

    @property
    def batch_timeout_s(self) -> float:
        """How long one statement may take at the client: the server's limit plus a second."""
        return self.statement_timeout_ms / 1000 + 1


def _session(url: sa.URL, limits: SessionLimits | None = None) -> dict[str, Any]:
    """_SESSION for `url`, keeping the URL's own libpq options (the use case's search_path),
    with the bounds of `limits` when given."""
    own = url.query.get("options") or ""
    own = own if isinstance(own, str) else own[-1]
    options = f"{own} {_SESSION['options']}".strip()
    session: dict[str, Any] = {**_SESSION, "options": options}
    if limits is not None:
        session["options"] = f"{options} -c statement_timeout={limits.statement_timeout_ms}"
        session.update(connect_timeout=limits.connect_timeout_s, keepalives=1,
                       keepalives_idle=limits.keepalives_idle_s, keepalives_interval=10,
                       keepalives_count=3)
    return session


# A server that answered and refused the login: a configuration error, not an outage.
_LOGIN_REFUSED = re.compile(
    r"authentication failed|(role|database) \"[^\"]*\" does not exist|no pg_hba\.conf entry|"
    r"permission denied|not permitted to log in")


def login_problem(url: str | sa.URL, limits: SessionLimits | None = None) -> str | None:
    """Why the store at `url` refuses to let us in (wrong password, no such role or
    database), or None: it lets us in, it is SQLite, or it cannot be reached now (an outage
    is answered with 503s until it ends)."""
    import psycopg

    parsed = sa.make_url(url)
    if not _is_postgres(parsed):
        return None
    try:
        psycopg.connect(libpq_conninfo(parsed), **_session(parsed, limits)).close()
    except psycopg.OperationalError as exc:
        if _LOGIN_REFUSED.search(str(exc)):  # keep the server's words, not libpq's preamble
            line = str(exc).strip().splitlines()[0]
            return line.rsplit("failed: ", 1)[-1].replace("FATAL:  ", "")
    return None


@dataclass(frozen=True)
class Lookup:
    """One entity's answer; `fallback=True`: no prediction in the snapshot, score = fallback."""

    entity_id: str
    score: float | None
    fallback: bool
    model_name: str | None
    model_version: str | None
    snapshot_id: int | None
    snapshot_date: date | None
    scored_at: datetime | None

    @property
    def found(self) -> bool:
        """True when the snapshot holds a prediction for this entity."""
        return not self.fallback


@dataclass(frozen=True)
class ServedSnapshot:
    """The snapshot `predictions_current` serves (for health checks and status)."""

    snapshot_id: int
    snapshot_date: date
    model_name: str
    model_version: str
    data_version: str
    fallback_score: float | None
    row_count: int
    published_at: datetime
    activated_at: datetime | None
    activated_by: str | None


@cache
def _pg_sql(name: str) -> tuple[str, tuple[str, ...]]:
    """`sql/<name>.sql` with its `:name` binds as positional `%s`, and the names in order
    (positional parameters are the cheapest for psycopg to send)."""
    text = _statement(name).replace("%", "%%")
    return _BIND.sub("%s", text), tuple(_BIND.findall(text))


def _pg_params(names: tuple[str, ...], params: dict[str, Any]) -> list[Any]:
    return [params[name] for name in names]


class _StatementFailed(Exception):
    """The prepared fast path did not answer; the cursor path runs the call (and raises)."""


class _PreparedOne:
    """lookup_one.sql prepared once on a connection and run through libpq directly.

    The Python client's hot path: psycopg's cursor machinery (query conversion, prepare
    bookkeeping, its generator protocol) is about a third of a point lookup's CPU, which
    decides throughput when client processes share the database's cores. Rows are still
    typed by psycopg's own loaders; any failure leaves the call to the cursor path.
    """

    _count = itertools.count()

    def __init__(self, conn: Any) -> None:
        from psycopg import pq
        from psycopg.adapt import Transformer

        self._ok, self._tuples = pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK
        self.connection = conn
        self._pgconn = conn.pgconn
        self._load = Transformer(conn)
        self._name = f"precast_lookup_one_{next(self._count)}".encode()
        position = itertools.count(1)
        sql = _BIND.sub(lambda _: f"${next(position)}", _statement("lookup_one"))
        self.ready = self._pgconn.prepare(self._name, sql.encode(), None).status == self._ok

    def row(self, entity_id: str) -> tuple[Any, ...] | None:
        """The lookup_one row of `entity_id`, None when it has none; _StatementFailed else."""
        result = self._pgconn.exec_prepared(self._name, [entity_id.encode()], None, 1)
        if result.status != self._tuples:
            raise _StatementFailed(result.status)
        if not result.ntuples:
            return None
        self._load.set_pgresult(result)
        return self._load.load_row(0, tuple)


def _is_postgres(url: sa.URL) -> bool:
    return url.get_backend_name() in {"postgresql", "postgres"}


def libpq_conninfo(url: str | sa.URL) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (password and query kept)."""
    from psycopg.conninfo import make_conninfo

    u = sa.make_url(url)
    query = {k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()}
    parts = {"host": u.host, "port": u.port, "dbname": u.database, "user": u.username,
             "password": u.password, **query}
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})


def _hit(row: Sequence[Any]) -> Lookup:
    """A found Lookup from a lookup_one.sql row."""
    entity_id, score, scored_at, snapshot_id, snapshot_date, model_name, model_version = row
    return Lookup(str(entity_id), float(score), False, model_name, model_version,
                  int(snapshot_id), as_date(snapshot_date), as_utc(scored_at))


def _answer(row: Sequence[Any], fallback_score: float | None) -> Lookup:
    """A Lookup from a lookup_predictions_*.sql row (score NULL = fallback)."""
    entity_id, score, scored_at, snapshot_id, snapshot_date, model_name, model_version, rate = row
    if score is None:
        score = fallback_score if fallback_score is not None else rate
        return Lookup(str(entity_id), None if score is None else float(score), True, model_name,
                      model_version, int(snapshot_id), as_date(snapshot_date), None)
    return Lookup(str(entity_id), float(score), False, model_name, model_version,
                  int(snapshot_id), as_date(snapshot_date), as_utc(scored_at))


def _served(row: Sequence[Any]) -> ServedSnapshot:
    """A ServedSnapshot from a lookup_current.sql row."""
    (snapshot_id, snapshot_date, model_name, model_version, data_version, fallback, rows,
     published_at, activated_at, activated_by) = row
    return ServedSnapshot(int(snapshot_id), as_date(snapshot_date),  # type: ignore[arg-type]
                          model_name, model_version, data_version,
                          None if fallback is None else float(fallback), int(rows),
                          as_utc(published_at), as_utc(activated_at),  # type: ignore[arg-type]
                          activated_by)


def _checked_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str | bytes):
        raise TypeError("get() takes a sequence of ids; use get_one() for a single id")
    return [str(i) for i in ids]


def _unpublished(url: sa.URL) -> NoSnapshotError:
    shown = url.render_as_string(hide_password=True)
    return NoSnapshotError(f"no prediction snapshot has been published to {shown} yet "
                           f"({CURRENT_VIEW} does not exist): run the publish step first")


class LookupClient:
    """Lookups against a prediction store URL (SQLite or PostgreSQL).

    On PostgreSQL each calling thread keeps one pooled connection (at most `pool_size`
    threads at once) until :meth:`close`.
    """

    def __init__(self, url: str | sa.URL | Engine, *, fallback_score: float | None = None,
                 pool_size: int = 4, limits: SessionLimits | None = None) -> None:
        """`fallback_score` overrides the snapshot's fallback; `pool_size` caps connections;
        `limits` bounds every session (default: the driver's defaults)."""
        self.url = url.url if isinstance(url, Engine) else sa.make_url(url)
        self.fallback_score = fallback_score
        self._pool: Any = None
        self._engine: Engine | None = None
        self._own = threading.local()  # the calling thread's connection and cursor
        if _is_postgres(self.url):
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(
                libpq_conninfo(self.url), min_size=1, max_size=max(1, pool_size), open=True,
                kwargs=_session(self.url, limits), name="precast-lookup")
        elif isinstance(url, Engine):
            self._engine = url
        else:
            busy = 30.0 if limits is None else limits.busy_timeout_ms / 1000
            self._engine = make_engine(self.url, busy_timeout_s=busy)
        self._owns_engine = not isinstance(url, Engine)

    def _rows(self, name: str, params: dict[str, Any], many: bool) -> Any:
        """Run one lookup statement; a missing view becomes NoSnapshotError."""
        try:
            if self._pool is not None:
                sql, names = _pg_sql(name)
                cursor = self._cursor().execute(sql, _pg_params(names, params), prepare=True)
                return cursor.fetchall() if many else cursor.fetchone()
            assert self._engine is not None
            with self._engine.connect() as conn:
                result = conn.execute(sa.text(_statement(name)), params)
                return result.all() if many else result.first()
        except Exception as exc:
            if _missing_view(exc):
                raise _unpublished(self.url) from None
            self._drop_broken()
            raise

    def _cursor(self) -> Any:
        """This thread's cursor on its own connection, taken from the pool once and kept: a
        lookup is one round trip with no pool or cursor set-up."""
        cursor = getattr(self._own, "cursor", None)
        if cursor is None or cursor.closed or cursor.connection.closed:
            self._drop_broken()
            cursor = self._own.cursor = self._pool.getconn().cursor()
        return cursor

    def _drop_broken(self) -> None:
        """Give back this thread's connection after an error (the pool checks or replaces it)."""
        cursor = getattr(self._own, "cursor", None)
        if cursor is not None and self._pool is not None:
            self._own.cursor = None
            self._pool.putconn(cursor.connection)

    def get_one(self, entity_id: str) -> Lookup:
        """The Lookup for one id (fallback=True when it has no prediction)."""
        entity_id = str(entity_id)
        try:
            row = self._prepared_one().row(entity_id)
        except _StatementFailed:
            self._own.prepared = None  # prepared again on the next call
            row = self._rows("lookup_one", {"entity_id": entity_id}, many=False)
        return _hit(row) if row is not None else self.get([entity_id])[0]

    def _prepared_one(self) -> _PreparedOne:
        """This thread's prepared lookup_one (PostgreSQL); _StatementFailed on SQLite or when
        it cannot be prepared (no view yet: the cursor path says so)."""
        if self._pool is None:
            raise _StatementFailed("sqlite")
        cursor = self._cursor()
        prepared = getattr(self._own, "prepared", None)
        if prepared is None or prepared.connection is not cursor.connection:
            prepared = self._own.prepared = _PreparedOne(cursor.connection)
        if not prepared.ready:
            self._own.prepared = None
            raise _StatementFailed("not prepared")
        return prepared

    def get(self, ids: Sequence[str]) -> list[Lookup]:
        """One Lookup per requested id, in order, all from the same snapshot."""
        wanted = _checked_ids(ids)
        if not wanted:
            return []
        if self._pool is not None:
            rows = self._rows("lookup_predictions_postgresql", {"ids": wanted}, many=True)
        else:
            rows = self._rows("lookup_predictions_sqlite", {"ids": json.dumps(wanted)}, many=True)
        return [_answer(row, self.fallback_score) for row in rows]

    def current(self) -> ServedSnapshot:
        """The snapshot being served (NoSnapshotError before the first publish)."""
        return _served(self._rows("lookup_current", {}, many=False))

    def close(self) -> None:
        """Release the connections."""
        if self._pool is not None:
            self._drop_broken()
            self._pool.close()
        elif self._engine is not None and self._owns_engine:
            self._engine.dispose()

    def __enter__(self) -> LookupClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _missing_view(exc: BaseException) -> bool:
    """True for "the view or the control table does not exist" on either backend."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "42P01" or (
        "no such table" in str(orig)
        and (CURRENT_VIEW in str(orig) or SNAPSHOTS_TABLE in str(orig)))


class AsyncLookupClient:
    """The same lookups for asyncio: psycopg's async pool, or the sync client in a thread.

    On PostgreSQL, concurrent :meth:`get_one` calls are coalesced: at most `concurrency`
    statements run at once, and the calls that arrive meanwhile go together in the next one
    (lookup_predictions_postgresql.sql, so each still answers from one snapshot). A lone call
    is sent at once; under load, many calls share a round trip and a statement.

    Faults cost at most one failed call: a statement that fails because its connection died
    (a restarted server, a terminated backend) has the pool check its idle connections and
    runs again on another, until one that was not dead answers or fails (at most `pool_size`
    more tries: a connection handed back just before its backend was killed escapes the
    check, and each dead connection is dropped once found); each coalesced statement is given
    up after `limits.batch_timeout_s`, so a drainer never stays stuck on a lock or a silent
    peer.
    """

    def __init__(self, url: str | sa.URL, *, fallback_score: float | None = None,
                 pool_size: int = 8, concurrency: int = 1, max_coalesced: int = 256,
                 limits: SessionLimits | None = None) -> None:
        self.url = sa.make_url(url)
        self.fallback_score = fallback_score
        self.limits = limits or SessionLimits()
        self._pool_size = max(1, pool_size)
        self._concurrency = max(1, min(concurrency, self._pool_size))
        self._max_coalesced = max(1, max_coalesced)
        self._pool: Any = None
        self._sync: LookupClient | None = None
        # Waiting get_one calls: id, the caller's future, whether it was already retried.
        self._waiting: deque[tuple[str, asyncio.Future[Lookup], bool]] = deque()
        self._drainers: set[asyncio.Task[None]] = set()
        self._active = 0  # drainers that may still take waiting calls
        self.statements = 0  # statements that answered get_one calls (calls >= statements)

    async def open(self) -> None:
        """Open the pool (PostgreSQL) or the thread-backed client (SQLite)."""
        if _is_postgres(self.url):
            from psycopg_pool import AsyncConnectionPool

            self._pool = AsyncConnectionPool(
                libpq_conninfo(self.url), min_size=self._concurrency, max_size=self._pool_size,
                open=False, kwargs=_session(self.url, self.limits), name="precast-api",
                timeout=self.limits.connect_timeout_s)
            await self._pool.open()
        else:
            self._sync = LookupClient(self.url, fallback_score=self.fallback_score,
                                      limits=self.limits)

    async def close(self) -> None:
        """Stop answering (callers still waiting are cancelled) and release the connections."""
        for task in self._drainers:
            task.cancel()
        if self._drainers:
            await asyncio.gather(*self._drainers, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
        if self._sync is not None:
            self._sync.close()

    async def _rows(self, cursor: Any, name: str, params: dict[str, Any], many: bool) -> Any:
        """Run one lookup statement on `cursor`; a missing view becomes NoSnapshotError."""
        sql, names = _pg_sql(name)
        try:
            await cursor.execute(sql, _pg_params(names, params), prepare=True)
            return await (cursor.fetchall() if many else cursor.fetchone())
        except Exception as exc:
            if _missing_view(exc):
                raise _unpublished(self.url) from None
            raise

    async def _pooled(self, name: str, params: dict[str, Any], many: bool) -> Any:
        """One statement on a pooled connection; again on another while the one it ran on was
        dead (the pool drops a dead connection, so `pool_size` + 1 tries reach a live or a new
        one)."""
        tries = self._pool_size + 1
        for attempt in range(1, tries + 1):
            async with self._pool.connection() as conn:
                try:
                    return await self._rows(conn.cursor(), name, params, many)
                except Exception:
                    if attempt == tries or not conn.broken:
                        raise
            log.warning("a pooled connection died; checking the pool and retrying")
            await self._pool.check()
        raise AssertionError("unreachable")

    async def _lookup(self, cursor: Any, ids: list[str]) -> list[Lookup]:
        """One Lookup per id, in order, from ONE statement (one id: the indexed fast path)."""
        if len(ids) == 1:
            row = await self._rows(cursor, "lookup_one", {"entity_id": ids[0]}, many=False)
            if row is not None:
                return [_hit(row)]
        rows = await self._rows(cursor, "lookup_predictions_postgresql", {"ids": ids}, many=True)
        if len(rows) != len(ids):  # the view exists but serves no snapshot row
            raise _unpublished(self.url)
        return [_answer(row, self.fallback_score) for row in rows]

    async def get_one(self, entity_id: str) -> Lookup:
        """The Lookup for one id (fallback=True when it has no prediction)."""
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.get_one, entity_id)
        answer: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._waiting.append((str(entity_id), answer, False))
        self._kick()
        return await answer

    def _kick(self) -> None:
        """Start a drainer when calls wait and fewer than `concurrency` drainers run."""
        if self._waiting and self._active < self._concurrency:
            self._active += 1
            task = asyncio.create_task(self._drain())
            self._drainers.add(task)
            task.add_done_callback(self._drainers.discard)

    async def _drain(self) -> None:
        """Answer waiting get_one calls, many per statement, until none wait.

        A drainer stops counting as active in the same step in which it sees nobody waiting,
        so a call arriving while it hands its connection back starts a new one. When its
        connection dies (or a statement overruns), it hands the connection back (the pool
        discards it) and the next drainer starts on a checked one.
        """
        active, broken = True, False
        try:
            async with self._pool.connection() as conn:
                cursor = conn.cursor()
                while self._waiting and not broken:
                    broken = not await self._answer_batch(cursor) or conn.broken
                if not broken:
                    self._active, active = self._active - 1, False
            if broken:
                await self._pool.check()
        except BaseException as exc:  # no connection: nobody waiting can be answered now
            while self._waiting:
                _settle(self._waiting.popleft()[1], exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if active:
                self._active -= 1
            self._kick()  # a broken connection left calls waiting

    async def _answer_batch(self, cursor: Any) -> bool:
        """Take up to max_coalesced waiting calls (skipping cancelled ones) and answer them;
        False when the connection is no longer usable (its calls wait again, once)."""
        batch: list[tuple[str, asyncio.Future[Lookup], bool]] = []
        while self._waiting and len(batch) < self._max_coalesced:
            call = self._waiting.popleft()
            if not call[1].done():  # a caller that timed out no longer waits
                batch.append(call)
        if not batch:
            return True
        self.statements += 1
        try:
            async with asyncio.timeout(self.limits.batch_timeout_s):
                hits = await self._lookup(cursor, [entity_id for entity_id, _, _ in batch])
        except BaseException as exc:
            # A dead connection's calls wait again, first in line and once, for a drainer on a
            # checked connection. A statement past its time is not retried: it would be too
            # late for its callers.
            timed_out = isinstance(exc, TimeoutError)
            dead = timed_out or bool(cursor.connection.broken)
            retry = dead and not timed_out and isinstance(exc, Exception)
            for entity_id, answer, retried in reversed(batch):
                if retry and not retried:
                    self._waiting.appendleft((entity_id, answer, True))
                else:
                    _settle(answer, exc)
            if not isinstance(exc, Exception):
                raise
            return not dead
        for (_, answer, _), hit in zip(batch, hits, strict=True):
            _settle(answer, hit)
        return True

    async def get(self, ids: Sequence[str]) -> list[Lookup]:
        """One Lookup per requested id, in order, all from the same snapshot."""
        wanted = _checked_ids(ids)
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.get, wanted)
        if not wanted:
            return []
        async with asyncio.timeout(self.limits.batch_timeout_s):
            rows = await self._pooled("lookup_predictions_postgresql", {"ids": wanted},
                                      many=True)
        return [_answer(row, self.fallback_score) for row in rows]

    async def current(self) -> ServedSnapshot:
        """The snapshot being served (NoSnapshotError before the first publish)."""
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.current)
        return _served(await self._pooled("lookup_current", {}, many=False))


def _settle(answer: asyncio.Future[Lookup], outcome: Lookup | BaseException) -> None:
    """Resolve a waiting call's future unless its caller gave up (cancelled)."""
    if answer.done():
        return
    if isinstance(outcome, asyncio.CancelledError):
        answer.cancel()
    elif isinstance(outcome, BaseException):
        answer.set_exception(outcome)
    else:
        answer.set_result(outcome)
