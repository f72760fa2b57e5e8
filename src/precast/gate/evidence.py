"""What the champion gate decides on and what it decided: the scored models, the slices,
the rules with their numbers. Plain data, shared by the gate (precast.steps.gate), its
evidence report (precast.gate.report) and the model card (precast.gate.card)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np

OVERALL = "overall"


@dataclass(frozen=True)
class Rule:
    """One check of the policy with its numbers: `value` had to meet `bound`."""

    name: str  # e.g. "floor roc_auc", "not worse on roc_auc"
    scope: str  # "overall" or a slice such as "country=DE"
    metric: str
    value: float  # the challenger's
    bound: float  # what it had to reach (a floor, or the champion's value less tolerance)
    passed: bool
    champion: float | None = None  # the champion's value, for comparisons
    note: str = ""  # a rule that is not a number (a pin) says what it is here

    def evidence(self) -> str:
        """`challenger 0.8123 vs champion 0.8200 (bound 0.8100)` or `challenger ... vs 0.6`."""
        if self.note:
            return self.note
        if self.champion is None:
            return f"challenger {self.value:.4f} vs {self.bound:g}"
        return (f"challenger {self.value:.4f} vs champion {self.champion:.4f} "
                f"(bound {self.bound:.4f})")

    def describe(self) -> str:
        scope = "" if self.scope == OVERALL else f" [{self.scope}]"
        return f"{self.name}{scope}: {self.evidence()}"


@dataclass(frozen=True)
class Decision:
    promote: bool
    rules: tuple[Rule, ...]

    def failed(self) -> list[str]:
        return [rule.describe() for rule in self.rules if not rule.passed]


@dataclass(frozen=True)
class SliceResult:
    """One slice of the test set: both models' metrics, or why it was not compared."""

    column: str
    value: str
    rows: int
    challenger: dict[str, float]
    champion: dict[str, float] | None
    skipped: str = ""  # the reason it was not compared ("" = compared)

    @property
    def scope(self) -> str:
        return f"{self.column}={self.value}"


@dataclass(frozen=True)
class Scored:
    """One model version's predictions on the test set."""

    version: str
    scores: np.ndarray
    metrics: dict[str, float]
    importance: dict[str, float]  # gain per feature
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    """Everything the gate decided on: the test set, both models' scores, the slices."""

    test_date: date
    test_data_version: str
    labels: np.ndarray
    challenger: Scored
    champion: Scored | None
    slices: tuple[SliceResult, ...]
