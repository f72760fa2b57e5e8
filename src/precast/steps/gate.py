"""Champion gate: challenger vs champion on the same test set; promote or reject loudly.

Run: `precast run gate --date 2026-03-01` (or `python jobs/gate.py --date ...`).
The challenger is promoted (alias `champion`) only if it passes the absolute floors
and is not worse than the champion by more than the tolerance. With no champion yet,
floors alone decide. The decision and both sets of metrics are recorded as tags on
the challenger's model version.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

import pandas as pd

from precast import lake as lk
from precast import metrics as mx
from precast import model_artifact as ma
from precast import registry
from precast.config import Config, GateConfig
from precast.steps.features import LABEL
from precast.steps.train import load_dataset

log = logging.getLogger(__name__)


class ChallengerRejectedError(RuntimeError):
    """The gate kept the champion; the message lists the rules that failed."""


@dataclass(frozen=True)
class Decision:
    promote: bool
    rules: tuple[tuple[str, bool, str], ...]  # (rule, passed, evidence)

    def failed(self) -> list[str]:
        return [f"{rule}: {evidence}" for rule, ok, evidence in self.rules if not ok]


@dataclass(frozen=True)
class GateResult:
    promoted: bool
    challenger_version: str
    champion_version: str | None
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    decision: Decision


def decide(policy: GateConfig, challenger: dict[str, float],
           champion: dict[str, float] | None, tolerance: float | None = None) -> Decision:
    """Apply floors, then (when there is a champion) the tolerance on the gate metric."""
    tol = policy.tolerance if tolerance is None else tolerance
    rules = []
    for metric, bound in sorted(policy.floors.items()):
        ok = mx.meets_floor(metric, challenger[metric], bound)
        rules.append((f"floor {metric}", ok, f"challenger {challenger[metric]:.4f} vs {bound}"))
    if champion is not None:
        m = policy.metric
        ok = mx.not_worse(m, challenger[m], champion[m], tol)
        rules.append((f"not worse on {m} (tolerance {tol})", ok,
                      f"challenger {challenger[m]:.4f} vs champion {champion[m]:.4f}"))
    return Decision(all(ok for _, ok, _ in rules), tuple(rules))


def score_version(cfg: Config, ref: registry.ModelRef, test: pd.DataFrame) -> dict[str, float]:
    """Metrics of a registered version on the test set, with its own feature spec."""
    booster, spec = ma.load(registry.local_model(cfg, ref))
    return mx.classification_metrics(test[LABEL].to_numpy(), ma.predict(booster, test, spec))


def _record(cfg: Config, version: str, decision: Decision, chal: dict[str, float],
            champ: dict[str, float] | None, champ_version: str | None) -> None:
    registry.tag_version(cfg, version, {
        "gate.decision": "promoted" if decision.promote else "rejected",
        "gate.rules": json.dumps([list(r) for r in decision.rules]),
        "gate.challenger_metrics": json.dumps(chal),
        "gate.champion_metrics": json.dumps(champ),
        "gate.champion_version": str(champ_version),
    })


def run(cfg: Config, run_date: date, tolerance: float | None = None) -> GateResult:
    """Score both models on the challenger's test set, decide, record, promote or raise."""
    challenger = registry.by_alias(cfg, registry.CHALLENGER)
    if challenger is None:
        raise LookupError(f"no {registry.CHALLENGER!r} version of {cfg.model.name}; train first")
    test_date = date.fromisoformat(challenger.tags.get("run_date", run_date.isoformat()))
    test, _ = load_dataset(lk.Lake(cfg.lake_root).dataset("test", test_date))
    champion = registry.by_alias(cfg, registry.CHAMPION)
    champ_version = champion.version if champion else None
    chal = score_version(cfg, challenger, test)
    champ = score_version(cfg, champion, test) if champion else None
    decision = decide(cfg.gate, chal, champ, tolerance)
    _record(cfg, challenger.version, decision, chal, champ, champ_version)
    result = GateResult(decision.promote, challenger.version, champ_version,
                        chal, champ, decision)
    if not decision.promote:
        kept = f"v{champ_version}" if champ_version else "(none)"
        log.error("ALERT gate rejected %s v%s; champion %s stays: %s", cfg.model.name,
                  challenger.version, kept, "; ".join(decision.failed()))
        raise ChallengerRejectedError(f"challenger v{challenger.version} rejected, champion "
                                      f"{kept} stays: " + "; ".join(decision.failed()))
    if champion is None or champion.version != challenger.version:
        registry.set_alias(cfg, registry.CHAMPION, challenger.version)
    log.info("gate promoted %s v%s", cfg.model.name, challenger.version)
    return result
