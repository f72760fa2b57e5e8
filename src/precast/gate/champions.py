"""Champion history: who made which model version the champion, when, why, on what evidence.

The registry's `champion` alias says what the champion is now; the `champion_history`
table in the prediction store (sql/store_schema.sql) says what it was at any time, one row
per period. A change that moves the alias (the gate promoting a challenger, a person
forcing one in with `precast promote --force`, or rolling back with `precast rollback --to
model:V`) goes through :func:`change`: its intent row (`champion_changes`) is written first,
then the alias moves, then the history row and the intent's settlement commit together. A
crash anywhere in between leaves an unsettled intent that :func:`settle`, run first by every
gate, promote and rollback, rolls forward; so the alias and the history never disagree for
good. Pinning the champion against the gate (`precast promote --pin`) moves no alias and is
one transaction (:func:`record`).

    precast champions                      # the history, newest first
    sql/champion_at.sql                    # "which version was the champion at time T"
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa

from precast import store
from precast.config import Config, redact_text
from precast.errors import NotRetryable
from precast.model import registry
from precast.resources import statement

log = logging.getLogger(__name__)

Decision = Literal["gate", "override", "rollback", "pin", "unpin"]
AliasDecision = Literal["gate", "override", "rollback"]


class ChampionConflictError(NotRetryable, RuntimeError):
    """The registry's champion alias and champion_history disagree with no change in flight
    (the alias was moved outside precast): a person decides which is right. Not retryable."""


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


@dataclass(frozen=True)
class Change:
    """One row of champion_changes: a change of champion that moves the registry alias."""

    change_id: int
    model_name: str
    model_version: str
    previous_version: str | None
    snapshot_id: int | None  # a rollback's snapshot, served with the alias move
    requested_at: datetime
    decided_by: str
    decision: AliasDecision
    reason: str
    evidence: str | None


def _statement(name: str) -> sa.TextClause:
    return sa.text(statement(name))


def period(row: Any) -> ChampionPeriod:
    """A ChampionPeriod from a row of sql/champion_history_list.sql."""
    name, version, valid_from, valid_to, by, decision, reason, evidence = row
    return ChampionPeriod(name, version, store.as_utc(valid_from),  # type: ignore[arg-type]
                          store.as_utc(valid_to), by, decision, reason, evidence)


@contextmanager
def _answering(url: str, what: str) -> Iterator[None]:
    """Turn a store that cannot answer (locked, unreachable) into StoreUnavailableError,
    which is retryable and never reads as "no champion" or "not pinned"."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        reason = redact_text((str(exc.orig or exc).splitlines() or ["?"])[0])
        raise store.StoreUnavailableError(
            f"prediction store at {redact_text(url)} could not answer while {what}: "
            f"{reason} (retry when it is free)") from exc


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
    with store.connected(url) as engine, engine.begin() as conn:
        conn.execute(_statement("champion_history_close"), params)
        conn.execute(_statement("champion_history_insert"), params)
    return ChampionPeriod(model_name, str(version), moment, None, decided_by, decision,
                          reason.strip(), evidence)


def history(url: str, model_name: str) -> list[ChampionPeriod]:
    """Every champion period of `model_name`, newest first (reads only: works as the
    reader role, and on a store that has none yet)."""
    with store.connected(url, schema=False) as engine, \
            _answering(url, f"reading the champion history of {model_name}"), \
            engine.connect() as conn:
        if not sa.inspect(conn).has_table("champion_history"):
            return []
        rows = conn.execute(_statement("champion_history_list"), {"model_name": model_name})
        return [period(row) for row in rows]


def champion_at(url: str, model_name: str, at: datetime) -> ChampionPeriod | None:
    """The period that covers time `at` (sql/champion_at.sql), None before the first."""
    with store.connected(url, schema=False) as engine, engine.connect() as conn:
        if not sa.inspect(conn).has_table("champion_history"):
            return None
        row = conn.execute(_statement("champion_at"), {
            "model_name": model_name, "at": at.astimezone(UTC).isoformat(sep=" ")}).first()
        return None if row is None else period(row)


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


# ---------------------------------------------------------------- changes that move the alias


def change(cfg: Config, version: str, *, decided_by: str, decision: AliasDecision, reason: str,
           evidence: str | None = None, snapshot_id: int | None = None) -> ChampionPeriod:
    """Make `version` the champion: intent row, alias move (and, for a rollback, serving
    `snapshot_id`), then the history row with the intent's settlement, in that order.

    Interrupted changes are rolled forward first (:func:`settle`).
    """
    if not reason.strip():
        raise ValueError(f"a champion change ({decision}) needs a reason; it is recorded")
    settle(cfg)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    previous = champion.version if champion else None
    params = {"model_name": cfg.model.name, "model_version": str(version),
              "previous_version": previous,
              "snapshot_id": snapshot_id, "at": _now(), "decided_by": decided_by,
              "decision": decision, "reason": reason.strip(), "evidence": evidence}
    with store.connected(cfg.predictions_url, cfg.stores.writer_role) as engine:
        with engine.begin() as conn:
            change_id, at = conn.execute(_statement("champion_change_insert"), params).one()
        intent = Change(int(change_id), cfg.model.name, str(version), previous,
                        snapshot_id, store.as_utc(at), decided_by, decision,  # type: ignore[arg-type]
                        reason.strip(), evidence)
        return _complete(cfg, engine, intent)


def settle(cfg: Config) -> list[ChampionPeriod]:
    """Roll forward every change of champion that a crash interrupted (oldest first): the
    alias moves to its version, a rollback's snapshot is served, its history row is written
    with the time it was requested. Returns the periods so recorded."""
    reading = f"reading the champion changes of {cfg.model.name}"
    with ExitStack() as stack:
        with _answering(cfg.predictions_url, reading):  # the schema's DDL too
            engine = stack.enter_context(
                store.connected(cfg.predictions_url, cfg.stores.writer_role))
        with _answering(cfg.predictions_url, reading), engine.connect() as conn:
            interrupted = _open(conn, cfg.model.name)
        done = []
        for intent in interrupted:
            log.warning("completing the interrupted champion change %s: %s v%s (%s by %s, "
                        "requested %s)", intent.change_id, intent.model_name,
                        intent.model_version, intent.decision, intent.decided_by,
                        intent.requested_at)
            done.append(_complete(cfg, engine, intent))
        return done


def pending(cfg: Config) -> list[Change]:
    """The unsettled changes of champion (interrupted or in flight), oldest first; read only."""
    with store.connected(cfg.predictions_url, schema=False) as engine, \
            engine.connect() as conn:
        if not sa.inspect(conn).has_table("champion_changes"):
            return []
        return _open(conn, cfg.model.name)


def disagreement(cfg: Config, champion: registry.ModelRef | None) -> str | None:
    """Why the registry's champion alias and champion_history disagree, None when they agree
    (or when the history is empty: a registry older than the history)."""
    now = current(cfg.predictions_url, cfg.model.name)
    if now is None or (champion is not None and champion.version == now.model_version):
        return None
    alias = f"v{champion.version}" if champion else "on no version"
    return (f"the registry's {registry.CHAMPION!r} alias of {cfg.model.name} is {alias} but "
            f"champion_history records v{now.model_version} ({now.decision} by "
            f"{now.decided_by}) and no change is in flight: the alias was moved outside "
            "precast; record the registry's choice with `precast promote --force --version V "
            f"--reason ...` or go back with `precast rollback --to model:{now.model_version} "
            "--reason ...`")


def agreed_champion(cfg: Config) -> registry.ModelRef | None:
    """The champion, after rolling interrupted changes forward; ChampionConflictError when
    the alias and the history still disagree (the gate and pins act on neither then)."""
    settle(cfg)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    problem = disagreement(cfg, champion)
    if problem:
        raise ChampionConflictError(problem)
    return champion


def _now() -> str:
    return datetime.now(UTC).isoformat(sep=" ")


def _open(conn: sa.Connection, model_name: str) -> list[Change]:
    rows = conn.execute(_statement("champion_change_open"), {"model_name": model_name})
    return [Change(int(r[0]), r[1], r[2], r[3], None if r[4] is None else int(r[4]),
                   store.as_utc(r[5]), *r[6:]) for r in rows]  # type: ignore[arg-type]


def _complete(cfg: Config, engine: sa.Engine, intent: Change) -> ChampionPeriod:
    """Move the alias, serve a rollback's snapshot, write the history row: the intent's end
    state. A snapshot that cannot be served puts the alias back and abandons the intent."""
    registry.set_alias(cfg, registry.CHAMPION, intent.model_version)
    if intent.snapshot_id is not None:
        try:
            _serve(cfg, engine, intent)
        except BaseException as exc:
            if intent.previous_version is not None:
                registry.set_alias(cfg, registry.CHAMPION, intent.previous_version)
            _settle_row(engine, intent, "abandoned", f"{type(exc).__name__}: {exc}"[:500])
            raise
    at = intent.requested_at.isoformat(sep=" ")
    with engine.begin() as conn:
        if _settle_row_in(conn, intent, "completed", None):
            params = {"model_name": intent.model_name, "model_version": intent.model_version,
                      "at": at, "decided_by": intent.decided_by, "decision": intent.decision,
                      "reason": intent.reason, "evidence": intent.evidence}
            conn.execute(_statement("champion_history_close"), params)
            conn.execute(_statement("champion_history_insert"), params)
    return ChampionPeriod(intent.model_name, intent.model_version, intent.requested_at, None,
                          intent.decided_by, intent.decision, intent.reason, intent.evidence)


def _serve(cfg: Config, engine: sa.Engine, intent: Change) -> None:
    served = store.current(engine)
    if served is None or served.snapshot_id != intent.snapshot_id:
        assert intent.snapshot_id is not None
        store.activate(engine, intent.snapshot_id, by=intent.decided_by, reason=intent.reason,
                       policy=store.WritePolicy.of(cfg))


def _settle_row(engine: sa.Engine, intent: Change, outcome: str, note: str | None) -> None:
    with engine.begin() as conn:
        _settle_row_in(conn, intent, outcome, note)


def _settle_row_in(conn: sa.Connection, intent: Change, outcome: str, note: str | None) -> bool:
    """Settle the intent; False when another process settled it first."""
    done = conn.execute(_statement("champion_change_settle"), {
        "change_id": intent.change_id, "outcome": outcome, "at": _now(), "note": note})
    return bool(done.rowcount == 1)
