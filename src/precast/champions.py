"""Champion history: who made which model version the champion, when, why, on what evidence.

The registry's `champion` alias says what the champion is now; the `champion_history`
table in the prediction store (sql/store_schema.sql) says what it was at any time, one row
per period. Every change goes through :func:`record`: the gate promoting a challenger, a
person forcing one in (`precast promote --force`), rolling back (`precast rollback --to
model:V`), or pinning the champion against the gate (`precast promote --pin`).

    precast champions                      # the history, newest first
    sql/champion_at.sql                    # "which version was the champion at time T"
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from precast import store
from precast.resources import statement

Decision = Literal["gate", "override", "rollback", "pin", "unpin"]


@dataclass(frozen=True)
class ChampionPeriod:
    """One row of champion_history."""

    model_name: str
    model_version: str
    valid_from: datetime
    valid_to: datetime | None  # None: still the champion
    decided_by: str
    decision: str
    reason: str
    evidence: str | None

    @property
    def pinned(self) -> bool:
        """True when a person pinned this champion (the gate may not replace it)."""
        return self.decision == "pin"


def _statement(name: str) -> sa.TextClause:
    return sa.text(statement(name))


def _period(row: Any) -> ChampionPeriod:
    name, version, valid_from, valid_to, by, decision, reason, evidence = row
    return ChampionPeriod(name, version, store.as_utc(valid_from),  # type: ignore[arg-type]
                          store.as_utc(valid_to), by, decision, reason, evidence)


def _engine(url: str) -> sa.Engine:
    engine = store.make_engine(url)
    store.ensure_schema(engine)
    return engine


def record(url: str, model_name: str, version: str, *, decided_by: str, decision: Decision,
           reason: str, evidence: str | None = None,
           at: datetime | None = None) -> ChampionPeriod:
    """Close the open period of `model_name` and open one for `version`, in one transaction.

    Refused (ValueError) without a reason: every change of champion is explained.
    """
    if not reason.strip():
        raise ValueError(f"a champion change ({decision}) needs a reason; it is recorded")
    moment = (at or datetime.now(UTC)).astimezone(UTC)
    params = {"model_name": model_name, "model_version": str(version),
              "at": moment.isoformat(sep=" "), "decided_by": decided_by,
              "decision": decision, "reason": reason.strip(), "evidence": evidence}
    engine = _engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(_statement("champion_history_close"), params)
            conn.execute(_statement("champion_history_insert"), params)
    finally:
        engine.dispose()
    return ChampionPeriod(model_name, str(version), moment, None, decided_by, decision,
                          reason.strip(), evidence)


def history(url: str, model_name: str) -> list[ChampionPeriod]:
    """Every champion period of `model_name`, newest first."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(_statement("champion_history_list"), {"model_name": model_name})
            return [_period(row) for row in rows]
    finally:
        engine.dispose()


def champion_at(url: str, model_name: str, at: datetime) -> ChampionPeriod | None:
    """The period that covers time `at` (sql/champion_at.sql), None before the first."""
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            row = conn.execute(_statement("champion_at"), {
                "model_name": model_name, "at": at.astimezone(UTC).isoformat(sep=" ")}).first()
            return None if row is None else _period(row)
    finally:
        engine.dispose()


def current(url: str, model_name: str) -> ChampionPeriod | None:
    """The open period (the champion now, as recorded), None before the first."""
    periods = history(url, model_name)
    return periods[0] if periods and periods[0].valid_to is None else None


def previous_version(url: str, model_name: str) -> str | None:
    """The newest recorded champion version other than the current one (what a model
    rollback goes back to), None when there is none."""
    periods = history(url, model_name)
    if not periods:
        return None
    now = periods[0].model_version
    return next((p.model_version for p in periods if p.model_version != now), None)
