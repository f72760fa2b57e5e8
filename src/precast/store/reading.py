"""Reading the control table: every snapshot with its status, and the one served now."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from precast.store.engine import _engine
from precast.store.sql import _one, _run, as_date, as_utc
from precast.store.types import CURRENT_VIEW, SNAPSHOTS_TABLE, SnapshotInfo

if TYPE_CHECKING:
    pass

def _current_id(conn: Connection) -> int | None:
    """The snapshot id the view serves, or None when no snapshot was ever published."""
    if not sa.inspect(conn).has_table(CURRENT_VIEW):
        return None
    row = conn.execute(sa.text(_one("lookup_current", conn.dialect))).first()
    return None if row is None else int(row[0])


def _infos(conn: Connection) -> list[SnapshotInfo]:
    """All control rows, oldest first, with the served one flagged."""
    if not sa.inspect(conn).has_table(SNAPSHOTS_TABLE):
        return []
    served = _current_id(conn)
    return [_snapshot_info(row, served) for row in _run(conn, "store_snapshots_list")]


_TIMESTAMPS = ("created_at", "published_at", "activated_at")


def _snapshot_info(row: Any, served: int | None) -> SnapshotInfo:
    """A control row with driver values normalised (SQLite returns dates and times as text)."""
    values = dict(row._mapping)
    values.update({k: as_utc(values[k]) for k in _TIMESTAMPS},
                  snapshot_id=int(values["snapshot_id"]),
                  snapshot_date=as_date(values["snapshot_date"]))
    return SnapshotInfo(**values, current=values["snapshot_id"] == served)


def snapshots(source: Connection | Engine | str | sa.URL) -> list[SnapshotInfo]:
    """Every recorded snapshot (any status), oldest first; on an open connection, in it."""
    if isinstance(source, Connection):
        return _infos(source)
    with _engine(source) as engine, engine.connect() as conn:
        return _infos(conn)


def current(engine_or_url: Engine | str | sa.URL) -> SnapshotInfo | None:
    """The snapshot `predictions_current` serves, or None when none was published."""
    with _engine(engine_or_url) as engine, engine.connect() as conn:
        return next((info for info in _infos(conn) if info.current), None)


def _info(conn: Connection, snapshot_id: int) -> SnapshotInfo | None:
    return next((i for i in _infos(conn) if i.snapshot_id == snapshot_id), None)
