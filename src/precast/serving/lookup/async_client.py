"""The asyncio lookup client of the HTTP API: a psycopg connection pool on PostgreSQL, and
concurrent single lookups batched into one statement."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

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
from precast.serving.lookup.client import LookupClient
from precast.serving.lookup.postgres import (
    SessionLimits,
    _is_postgres,
    _pg_params,
    _pg_sql,
    _session,
    libpq_conninfo,
)

log = logging.getLogger(__name__)


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
