"""Lookup clients: scores for entity ids, read from the `predictions_current` view only.

    with LookupClient(cfg.predictions_url) as client:
        hit = client.get_one("u1")            # a Lookup; fallback=True = no prediction
        hits = client.get(["u1", "u2"])       # one Lookup per id, in request order

Every call is ONE SQL statement, so all of its answers come from one snapshot even while a
publish or rollback swaps the view. On PostgreSQL the clients talk psycopg 3 directly (a
connection pool, autocommit, server-side prepared statements): one round trip per lookup.
An entity with no prediction gets `fallback=True` and the fallback score: the one given to
the client, else the served snapshot's (the model's training label rate).
:class:`AsyncLookupClient` is the same for asyncio (the HTTP API).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.resources import statements
from precast.store import (
    CURRENT_VIEW,
    SNAPSHOTS_TABLE,
    NoSnapshotError,
    as_date,
    as_utc,
    make_engine,
)

__all__ = ["AsyncLookupClient", "Lookup", "LookupClient", "NoSnapshotError", "ServedSnapshot"]

log = logging.getLogger(__name__)
_BIND = re.compile(r"(?<![:\w]):(\w+)")
# Every lookup connection: one statement per round trip (autocommit), prepared on first use,
# read-only at the server too (a lookup can never write, whatever role it logs in as), and
# named in pg_stat_activity.
_SESSION = {"autocommit": True, "prepare_threshold": 0, "application_name": "precast-lookup",
            "options": "-c default_transaction_read_only=on"}


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


def _statement(name: str) -> str:
    (stmt,) = statements(name)
    return stmt


@cache
def _pg_sql(name: str) -> str:
    """`sql/<name>.sql` with `:name` binds as psycopg `%(name)s` placeholders."""
    return _BIND.sub(r"%(\1)s", _statement(name).replace("%", "%%"))


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
                 pool_size: int = 4) -> None:
        """`fallback_score` overrides the snapshot's fallback; `pool_size` caps connections."""
        self.url = url.url if isinstance(url, Engine) else sa.make_url(url)
        self.fallback_score = fallback_score
        self._pool: Any = None
        self._engine: Engine | None = None
        self._own = threading.local()  # the calling thread's connection: no pool hop per call
        if _is_postgres(self.url):
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(
                libpq_conninfo(self.url), min_size=1, max_size=max(1, pool_size), open=True,
                kwargs=_SESSION, name="precast-lookup")
        else:
            self._engine = url if isinstance(url, Engine) else make_engine(self.url)
        self._owns_engine = not isinstance(url, Engine)

    def _rows(self, name: str, params: dict[str, Any], many: bool) -> Any:
        """Run one lookup statement; a missing view becomes NoSnapshotError."""
        try:
            if self._pool is not None:
                cursor = self._connection().execute(_pg_sql(name), params)
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

    def _connection(self) -> Any:
        """This thread's connection, taken from the pool once and kept (one round trip/call)."""
        conn = getattr(self._own, "conn", None)
        if conn is None or conn.closed:
            conn = self._own.conn = self._pool.getconn()
        return conn

    def _drop_broken(self) -> None:
        """Give back this thread's connection after an error (the pool checks or replaces it)."""
        conn = getattr(self._own, "conn", None)
        if conn is not None and self._pool is not None:
            self._own.conn = None
            self._pool.putconn(conn)

    def get_one(self, entity_id: str) -> Lookup:
        """The Lookup for one id (fallback=True when it has no prediction)."""
        row = self._rows("lookup_one", {"entity_id": str(entity_id)}, many=False)
        return _hit(row) if row is not None else self.get([entity_id])[0]

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
    """The same lookups for asyncio: psycopg's async pool, or the sync client in a thread."""

    def __init__(self, url: str | sa.URL, *, fallback_score: float | None = None,
                 pool_size: int = 8) -> None:
        self.url = sa.make_url(url)
        self.fallback_score = fallback_score
        self._pool_size = max(1, pool_size)
        self._pool: Any = None
        self._sync: LookupClient | None = None

    async def open(self) -> None:
        """Open the pool (PostgreSQL) or the thread-backed client (SQLite)."""
        if _is_postgres(self.url):
            from psycopg_pool import AsyncConnectionPool

            self._pool = AsyncConnectionPool(
                libpq_conninfo(self.url), min_size=1, max_size=self._pool_size, open=False,
                kwargs=_SESSION, name="precast-api")
            await self._pool.open()
        else:
            self._sync = LookupClient(self.url, fallback_score=self.fallback_score)

    async def close(self) -> None:
        """Release the connections."""
        if self._pool is not None:
            await self._pool.close()
        if self._sync is not None:
            self._sync.close()

    async def _rows(self, name: str, params: dict[str, Any], many: bool) -> Any:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_pg_sql(name), params)
                return await (cursor.fetchall() if many else cursor.fetchone())
        except Exception as exc:
            if _missing_view(exc):
                raise _unpublished(self.url) from None
            raise

    async def get_one(self, entity_id: str) -> Lookup:
        """The Lookup for one id (fallback=True when it has no prediction)."""
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.get_one, entity_id)
        row = await self._rows("lookup_one", {"entity_id": str(entity_id)}, many=False)
        return _hit(row) if row is not None else (await self.get([entity_id]))[0]

    async def get(self, ids: Sequence[str]) -> list[Lookup]:
        """One Lookup per requested id, in order, all from the same snapshot."""
        wanted = _checked_ids(ids)
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.get, wanted)
        if not wanted:
            return []
        rows = await self._rows("lookup_predictions_postgresql", {"ids": wanted}, many=True)
        return [_answer(row, self.fallback_score) for row in rows]

    async def current(self) -> ServedSnapshot:
        """The snapshot being served (NoSnapshotError before the first publish)."""
        if self._sync is not None:
            return await asyncio.to_thread(self._sync.current)
        return _served(await self._rows("lookup_current", {}, many=False))
