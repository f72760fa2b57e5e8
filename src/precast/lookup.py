"""Lookup client: scores for entity ids, read from the `predictions_current` view only.

    with LookupClient(cfg.predictions_url) as client:
        hits = client.get(["u1", "u2"])   # one Lookup per id, in order; found=False = no prediction

All ids of one call are read in one transaction, so they come from one snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from types import TracebackType
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.resources import statements
from precast.store import CURRENT_VIEW, NoSnapshotError, as_date, as_utc, make_engine

__all__ = ["Lookup", "LookupClient", "NoSnapshotError"]

log = logging.getLogger(__name__)

CHUNK = 500  # ids per IN (...) query; well under SQLite's and PostgreSQL's bind limits


@dataclass(frozen=True)
class Lookup:
    """One entity's prediction; `found=False` is the fallback: no prediction in the snapshot."""

    entity_id: str
    score: float | None
    model_version: str | None
    snapshot_id: int | None
    snapshot_date: date | None
    scored_at: datetime | None
    found: bool


@cache
def _queries() -> tuple[sa.TextClause, sa.TextClause]:
    """The current-snapshot and batch lookup statements (ids as an expanding bind)."""
    (head,) = statements("lookup_current")
    (rows,) = statements("lookup_predictions")
    return sa.text(head), sa.text(rows).bindparams(sa.bindparam("ids", expanding=True))


class LookupClient:
    """Batch lookups against a prediction store URL (or an existing engine)."""

    def __init__(self, url: str | sa.URL | Engine) -> None:
        self._owns = not isinstance(url, Engine)
        self._engine = make_engine(url) if not isinstance(url, Engine) else url

    def get(self, ids: Sequence[str]) -> list[Lookup]:
        """One Lookup per requested id, in order; unknown ids come back with found=False."""
        if isinstance(ids, str | bytes):
            raise TypeError("get() takes a sequence of ids; use get_one() for a single id")
        if not ids:
            return []
        head_sql, rows_sql = _queries()
        unique = list(dict.fromkeys(str(i) for i in ids))
        with self._engine.connect() as conn, conn.begin():
            try:
                head = conn.execute(head_sql).first()
            except sa.exc.DBAPIError:
                self._raise_if_unpublished()
                raise
            found: dict[str, Lookup] = {}
            for start in range(0, len(unique), CHUNK):
                for row in conn.execute(rows_sql, {"ids": unique[start:start + CHUNK]}):
                    found[row.entity_id] = _hit(row)
        snapshot_id = None if head is None else int(head[0])
        snapshot_date = None if head is None else as_date(head[1])
        return [
            found.get(str(i)) or Lookup(str(i), None, None, snapshot_id, snapshot_date, None, False)
            for i in ids
        ]

    def get_one(self, entity_id: str) -> Lookup:
        """The Lookup for a single id (found=False when it has no prediction)."""
        return self.get([entity_id])[0]

    def _raise_if_unpublished(self) -> None:
        """Turn "the view does not exist" into NoSnapshotError; other errors pass through."""
        if not sa.inspect(self._engine).has_table(CURRENT_VIEW):
            url = self._engine.url.render_as_string(hide_password=True)
            raise NoSnapshotError(
                f"no prediction snapshot has been published to {url} yet "
                f"({CURRENT_VIEW} does not exist): run the publish step first"
            ) from None

    def close(self) -> None:
        """Release the connections (only of an engine this client made)."""
        if self._owns:
            self._engine.dispose()

    def __enter__(self) -> LookupClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _hit(row: Any) -> Lookup:
    """A found Lookup from a view row (driver values normalised)."""
    return Lookup(
        entity_id=row.entity_id, score=float(row.score), model_version=row.model_version,
        snapshot_id=int(row.snapshot_id), snapshot_date=as_date(row.snapshot_date),
        scored_at=as_utc(row.scored_at), found=True,
    )
