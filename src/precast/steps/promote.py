"""Audited overrides of the champion gate: force a challenger in, or pin the champion.

    precast promote --force [--version 7] --reason "slice drop is a labelling artefact, see #42"
    precast promote --pin --reason "holiday freeze until 2026-01-05"
    precast promote --unpin --reason "freeze over"

`--force` makes a version (default: the current challenger, typically one the gate rejected)
the champion. `--pin` freezes the current champion: the gate then rejects every challenger
with the pin as the failed rule, until `--unpin`. Each is refused without a reason and is
recorded with who and why in `champion_history` (precast.gate.champions) and on the model
version's tags. Manual-only DAG: `<use case>__promote`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from precast.config import Config
from precast.errors import NotRetryable
from precast.gate import champions
from precast.model import registry

log = logging.getLogger(__name__)

Action = Literal["force", "pin", "unpin"]
ACTIONS: tuple[Action, ...] = ("force", "pin", "unpin")


class PromoteError(NotRetryable, ValueError):
    """The override is refused: no reason, an unknown version, nothing to pin or unpin."""


@dataclass(frozen=True)
class PromoteResult:
    action: str
    model_name: str
    model_version: str
    previous_champion: str | None
    decided_by: str
    reason: str


def _version(cfg: Config, version: str | None) -> registry.ModelRef:
    """The named version, or the current challenger; PromoteError when there is none."""
    if version is None:
        ref = registry.by_alias(cfg, registry.CHALLENGER)
        if ref is None:
            raise PromoteError(f"{cfg.model.name} has no {registry.CHALLENGER!r} version; "
                               "name one with --version")
        return ref
    ref = registry.version(cfg, version)
    if ref is None:
        raise PromoteError(f"{cfg.model.name} has no version {version!r}")
    return ref


def run(cfg: Config, action: str, *, by: str, reason: str,
        version: str | None = None) -> PromoteResult:
    """Apply one override and record it; PromoteError says why one is refused."""
    if action not in ACTIONS:
        raise PromoteError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    if not reason.strip():
        raise PromoteError(f"--{action} needs a reason (it is recorded with your name)")
    url, name = cfg.predictions_url, cfg.model.name
    if action == "force":  # the way to settle an alias moved outside precast: no agreement asked
        champions.settle(cfg)
        champion = registry.by_alias(cfg, registry.CHAMPION)
        previous = champion.version if champion else None
        ref = _version(cfg, version)
        registry.tag_version(cfg, ref.version, {"champion_set_by": by,
                                                "champion_reason": reason.strip(),
                                                "gate.override": "forced"})
        champions.change(cfg, ref.version, decided_by=by, decision="override", reason=reason,
                         evidence=ref.tags.get("gate.report"))
        log.warning("OVERRIDE by %s: %s v%s is the champion (was %s) despite the gate: %s",
                    by, name, ref.version, previous, reason)
        return PromoteResult(action, name, ref.version, previous, by, reason.strip())
    champion = champions.agreed_champion(cfg)
    previous = champion.version if champion else None
    if champion is None:
        raise PromoteError(f"{name} has no champion to {action}")
    if version is not None and version != champion.version:
        raise PromoteError(f"--{action} applies to the champion (v{champion.version}), "
                           f"not v{version}")
    now = champions.current(url, name)
    pin = now if now is not None and now.pinned else None  # agreed: now is the alias's version
    if action == "pin" and pin is not None:
        raise PromoteError(f"v{champion.version} is already pinned (by {pin.decided_by}: "
                           f"{pin.reason})")
    if action == "unpin" and pin is None:
        raise PromoteError(f"v{champion.version} is not pinned")
    decision: champions.Decision = "pin" if action == "pin" else "unpin"
    champions.record(url, name, champion.version, decided_by=by, decision=decision,
                     reason=reason)
    log.warning("%s by %s: %s v%s: %s", action.upper(), by, name, champion.version, reason)
    return PromoteResult(action, name, champion.version, previous, by, reason.strip())
