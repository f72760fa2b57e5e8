"""Rollback (and roll forward): serve a retained snapshot again, at once.

    precast rollback --to snapshot:12 --reason "bad features in snapshot 13"
    precast rollback --to model:4 --reason "v5 over-predicts churn for tv users"
    precast rollback --to model:previous --reason "..."   # the champion before this one

`snapshot:N` repoints `predictions_current` at retained snapshot N. `model:V` repoints it at
the newest retained snapshot scored by model version V and moves the registry's `champion`
alias to V, so the next scheduled predict keeps serving V (`model:previous`: the champion
before the current one, from `champion_history`). Who and why are recorded on the snapshot,
in the `prediction_activations` history and, when the champion moves, in
`champion_history`. Manual-only DAG: `<use case>__rollback`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from precast import store
from precast.config import Config
from precast.errors import NotRetryable
from precast.gate import champions
from precast.model import registry

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^(snapshot|model):\s*(\S+)$")


class RollbackTargetError(NotRetryable, ValueError):
    """The rollback target is malformed or names nothing that can be served."""


@dataclass(frozen=True)
class RollbackResult:
    """What is served after the rollback."""

    snapshot_id: int
    model_name: str
    model_version: str
    previous_snapshot_id: int | None
    champion_moved: bool
    activated_by: str
    reason: str


def parse_target(target: str) -> tuple[str, str]:
    """`snapshot:N` / `model:V` → (kind, value); anything else raises with the accepted forms."""
    match = _TARGET.match(target.strip())
    if match is None or (match.group(1) == "snapshot" and not match.group(2).isdigit()):
        raise RollbackTargetError(
            f"rollback target {target!r}: use snapshot:<snapshot id> or model:<model version>")
    return match.group(1), match.group(2)


def choose_snapshot(infos: list[store.SnapshotInfo], kind: str, value: str,
                    model_name: str) -> store.SnapshotInfo:
    """The retained snapshot a target names (for a model version: its newest one)."""
    retained = [i for i in infos if i.status == "published"]
    if kind == "snapshot":
        chosen = [i for i in retained if i.snapshot_id == int(value)]
    else:
        chosen = [i for i in retained if (i.model_name, i.model_version) == (model_name, value)]
    if not chosen:
        shown = ", ".join(f"{i.snapshot_id} ({i.model_name} v{i.model_version}, "
                          f"{i.snapshot_date})" for i in retained) or "none"
        raise RollbackTargetError(
            f"no retained snapshot for {kind} {value}; retained snapshots: {shown}")
    return max(chosen, key=lambda i: i.snapshot_id)


def _previous_champion(cfg: Config) -> str:
    """The champion before the current one, from champion_history (`model:previous`)."""
    version = champions.previous_version(cfg.predictions_url, cfg.model.name)
    if version is None:
        raise RollbackTargetError(f"model:previous: champion_history of {cfg.model.name} "
                                  "records no earlier champion")
    return version


def run(cfg: Config, target: str, *, by: str, reason: str) -> RollbackResult:
    """Serve the target's snapshot; for `model:V` also make V the champion."""
    if not reason.strip():
        raise RollbackTargetError("a rollback needs a reason (it is recorded)")
    kind, value = parse_target(target)
    champions.settle(cfg)  # the way back from an alias moved outside precast: none asked
    if (kind, value) == ("model", "previous"):
        value = _previous_champion(cfg)
    infos = store.snapshots(cfg.predictions_url)
    chosen = choose_snapshot(infos, kind, value, cfg.model.name)
    previous = next((i.snapshot_id for i in infos if i.current), None)
    old_champion = registry.by_alias(cfg, registry.CHAMPION) if kind == "model" else None
    moved = kind == "model" and (old_champion is None or old_champion.version != value)
    if moved:  # alias and snapshot move together (a snapshot that cannot serve undoes both)
        champions.change(cfg, value, decided_by=by, decision="rollback", reason=reason,
                         evidence=f"serving snapshot {chosen.snapshot_id}",
                         snapshot_id=chosen.snapshot_id)
        registry.tag_version(cfg, value, {"champion_set_by": by, "champion_reason": reason})
    else:
        store.activate(cfg.predictions_url, chosen.snapshot_id, by=by, reason=reason,
                       policy=store.WritePolicy.of(cfg))
    info = next(i for i in store.snapshots(cfg.predictions_url)
                if i.snapshot_id == chosen.snapshot_id)
    log.warning("rollback by %s: serving snapshot %s (%s v%s), was %s; reason: %s", by,
                info.snapshot_id, info.model_name, info.model_version, previous, reason)
    return RollbackResult(info.snapshot_id, info.model_name, info.model_version, previous,
                          moved, by, reason)
