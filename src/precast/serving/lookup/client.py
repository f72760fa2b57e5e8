"""The synchronous lookup client (one SQL statement per call, so every answer of a call comes
from one snapshot even while a publish or rollback swaps the view)."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.resources import statement as _statement
from precast.serving.lookup.answers import (
    Lookup,
    ServedSnapshot,
    _answer,
    _checked_ids,
    _hit,
    _missing_view,
    _served,
    _unpublished,
)
from precast.serving.lookup.postgres import (
    SessionLimits,
    _is_postgres,
    _pg_params,
    _pg_sql,
    _PreparedOne,
    _session,
    _StatementFailed,
    libpq_conninfo,
)
from precast.store import (
    make_engine,
)


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
