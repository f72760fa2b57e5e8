"""Retention and rollback: `retire` keeps the newest N published snapshots; `activate` (rollback
or roll forward) repoints the view at a retained snapshot the same way a publish does,
recording who and why."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.store.engine import _engine
from precast.store.reading import _current_id, _info, _infos
from precast.store.sql import _dialect, _one, _run
from precast.store.swap import _act_as_writer, _swap
from precast.store.types import SnapshotInfo, SnapshotNotFoundError, WritePolicy

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def retire(engine: Engine, keep: int, policy: WritePolicy = WritePolicy()) -> list[int]:
    """Drop the tables of published snapshots beyond the newest `keep` (never the served one)."""
    with engine.connect() as conn:
        served = _current_id(conn)
        retained = _run(conn, "store_snapshots_retained").all()
    retired: list[int] = []
    for snapshot_id, name in retained[keep:]:
        if snapshot_id == served:
            continue
        try:
            with engine.begin() as conn:
                _act_as_writer(conn, policy)
                if _dialect(conn) == "postgresql":
                    _run(conn, "store_lock_timeout_postgresql",
                         {"timeout": f"{policy.lock_timeout_ms}ms"})
                if _current_id(conn) == snapshot_id:  # a rollback got there first
                    continue
                conn.exec_driver_sql(_one("store_table_drop", conn.dialect, name))
                _run(conn, "store_snapshot_retired", {
                    "snapshot_id": snapshot_id,
                    "note": f"retired: beyond the newest {keep} published snapshots",
                })
        except sa.exc.SQLAlchemyError:
            log.warning("could not retire snapshot %s; will retry next publish", snapshot_id,
                        exc_info=True)
            continue
        retired.append(int(snapshot_id))
    if retired:
        log.info("retired snapshots %s (keeping %s)", retired, keep)
    return retired


def activate(
    engine_or_url: Engine | str | sa.URL, snapshot_id: int, *, by: str, reason: str,
    policy: WritePolicy = WritePolicy(),
) -> SnapshotInfo:
    """Serve a retained (published) snapshot at once: rollback, or roll forward again."""
    if not by.strip() or not reason.strip():
        raise ValueError("activating a snapshot needs who (by) and why (reason)")
    with _engine(engine_or_url) as engine:
        with engine.connect() as conn:
            target = _info(conn, snapshot_id)
            servable = [i.snapshot_id for i in _infos(conn) if i.status == "published"]
        if target is None or target.status != "published" or target.table_name is None:
            state = "does not exist" if target is None else f"is {target.status}"
            raise SnapshotNotFoundError(
                f"cannot serve snapshot {snapshot_id}: it {state}; retained snapshots: {servable}"
            )
        if target.current:
            log.info("snapshot %s is already served; recording the decision only", snapshot_id)
        with engine.connect() as conn, conn.begin():
            _act_as_writer(conn, policy)
            _swap(conn, target.table_name, policy, by=by, action="rollback", reason=reason)
        log.warning("predictions_current now serves snapshot %s (by %s: %s)", snapshot_id, by,
                    reason)
        with engine.connect() as conn:
            info = _info(conn, snapshot_id)
        assert info is not None
        return info
