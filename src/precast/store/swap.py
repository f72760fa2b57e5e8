"""The swap: `predictions_current` repointed at a snapshot's table in the publishing
transaction, waiting for readers' locks at most `WritePolicy.lock_timeout_ms` per attempt and
retried from a savepoint, so a long reader can neither stall lookups behind the swap nor make
the load redo."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from precast.store.sql import _dialect, _render, _run, _utc_text
from precast.store.types import (
    CURRENT_VIEW,
    SnapshotNotFoundError,
    StoreError,
    SwapBlockedError,
    WritePolicy,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def _act_as_writer(conn: Connection, policy: WritePolicy) -> None:
    """PostgreSQL: SET ROLE to the writer role for this transaction, when one is configured."""
    if policy.writer_role and _dialect(conn) == "postgresql":
        _run(conn, "store_set_role_postgresql", {"role": policy.writer_role})


def _swap(
    conn: Connection, table: str, policy: WritePolicy, *, by: str, action: str, reason: str,
    published_rows: int | None = None,
) -> None:
    """Repoint the view at `table` inside the caller's transaction, retrying while readers block."""
    pause = policy.pause_s
    for attempt in range(1, policy.attempts + 1):
        try:
            with conn.begin_nested():
                _repoint(conn, table, by=by, action=action, reason=reason,
                         published_rows=published_rows, timeout_ms=policy.lock_timeout_ms)
            return
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            if attempt == policy.attempts:
                raise SwapBlockedError(
                    f"could not repoint {CURRENT_VIEW} at {table}: {policy.attempts} attempts "
                    f"of {policy.lock_timeout_ms} ms each were blocked by sessions holding the "
                    f"view: {_blockers(conn)}; nothing changed"
                ) from None
            log.warning("swap to %s blocked by readers (attempt %s/%s); retrying in %.1f s",
                        table, attempt, policy.attempts, pause)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def _repoint(
    conn: Connection, table: str, *, by: str, action: str, reason: str,
    published_rows: int | None, timeout_ms: int,
) -> None:
    """One swap attempt: view, snapshot status, activation record (one savepoint)."""
    postgres = _dialect(conn) == "postgresql"
    if postgres:
        _run(conn, "store_lock_timeout_postgresql", {"timeout": f"{timeout_ms}ms"})
    # Take the view's lock first (no read of the view before it: two swappers that both held a
    # share lock would deadlock on the upgrade); the history then names the previous snapshot.
    for stmt in _render(f"store_view_{_dialect(conn)}", conn.dialect, table):
        conn.exec_driver_sql(stmt)
    snapshot_id = int(table.rsplit("_", 1)[1])
    now = _utc_text(datetime.now(UTC))
    if published_rows is not None:
        updated = _run(conn, "store_snapshot_published", {
            "snapshot_id": snapshot_id, "table_name": table, "row_count": published_rows,
            "published_at": now}).rowcount
        if updated != 1:
            raise StoreError(f"snapshot {snapshot_id} is no longer loading; not published")
    elif _run(conn, "store_snapshot_activated_check", {"snapshot_id": snapshot_id}).first() is None:
        raise SnapshotNotFoundError(f"snapshot {snapshot_id} is no longer published; not served")
    previous = _run(conn, "store_activation_latest").scalar()
    _run(conn, "store_snapshot_activated", {"snapshot_id": snapshot_id, "activated_at": now,
                                            "activated_by": by, "reason": reason})
    _run(conn, "store_activation_insert", {
        "snapshot_id": snapshot_id, "previous_snapshot_id": previous, "activated_at": now,
        "activated_by": by, "action": action, "reason": reason})


def _blockers(conn: Connection) -> str:
    """Who holds the view (PostgreSQL), for the error message."""
    if _dialect(conn) != "postgresql":
        return "another writer"
    rows = _run(conn, "store_view_blockers_postgresql").all()
    return "; ".join(f"pid {r.pid} ({r.usename}, {r.state}, since {r.xact_start}: {r.query!r})"
                     for r in rows) or "no session holds it any more"
