"""What a lookup answers: a score for an entity (or the fallback, flagged), and the snapshot
that is served, read from rows of `predictions_current` and the control table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from precast.store import (
    CURRENT_VIEW,
    SNAPSHOTS_TABLE,
    NoSnapshotError,
    as_date,
    as_utc,
)


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


def _missing_view(exc: BaseException) -> bool:
    """True for "the view or the control table does not exist" on either backend."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "42P01" or (
        "no such table" in str(orig)
        and (CURRENT_VIEW in str(orig) or SNAPSHOTS_TABLE in str(orig)))
