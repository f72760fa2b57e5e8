"""Model cards: one markdown page per registered model version, an MLflow artifact.

Train writes the first card of every version it registers (the gate's part pending); the
gate rewrites it with the per-slice metrics and its decision. Sections: what is predicted
(model.task and model.target_description), intended use, training data (version and date
range), features, parameters, metrics overall and by slice (those of the task, see
precast.metrics), known limits, the gate decision, and the version's lineage.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from precast.config import Config
from precast.metrics import LABEL_MEAN, LABEL_MEAN_WORDS, SUMMARY
from precast.model import registry

if TYPE_CHECKING:
    from precast.gate.evidence import Decision, SliceResult

CARD_FILE = "model_card.md"
# The per-slice columns of each task: a quality metric and a calibration one.
SCORE_MEANS = {"binary": "the probability that the label is 1",
               "regression": "the predicted value of the label, in its units"}
SLICE_METRICS = {"binary": ("roc_auc", "calibration_error"), "regression": ("rmse", "bias")}


@dataclass(frozen=True)
class CardFacts:
    """What a card says about one version (everything but the config's prose)."""

    version: str
    run_id: str
    tags: Mapping[str, str]
    features: Sequence[str]
    params: Mapping[str, Any]
    metrics: Mapping[str, float]  # on its test set
    train_manifest: Mapping[str, Any] = field(default_factory=dict)
    monotone: Mapping[str, int] = field(default_factory=dict)
    slices: Sequence[SliceResult] = ()
    decision: Decision | None = None
    report_uri: str | None = None


def _f(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


def intended_use(cfg: Config) -> str:
    """model.intended_use, else what any use case of its task can say."""
    if cfg.model.intended_use:
        return cfg.model.intended_use
    return (f"Gives every entity {SCORE_MEANS[cfg.model.task]} ({cfg.model.target_description})"
            ", refreshed in batch and served from the prediction table. Not meant for any "
            "decision about an individual without human review.")


def render(cfg: Config, facts: CardFacts) -> str:
    """The card as markdown."""
    tags = facts.tags
    snapshots = list(facts.train_manifest.get("snapshots") or [])
    horizon = cfg.features.label_horizon_days
    span = (f"feature snapshots {snapshots[0]} .. {snapshots[-1]} ({len(snapshots)}), each "
            f"labelled over the following {horizon} days" if snapshots else "not recorded")
    task = cfg.model.task
    label_mean = tags.get("train_label_mean", tags.get("train_label_rate", "–"))
    lines = [
        f"# Model card: {cfg.model.name} v{facts.version}", "",
        "## What is predicted", "",
        f"- task: {task} (the score is {SCORE_MEANS[task]})",
        f"- label: {cfg.model.target_description}", "",
        "## Intended use", "", intended_use(cfg), "",
        "## Training data", "",
        f"- data version: `{tags.get('data_version', '–')}`; {span}",
        f"- rows: {tags.get('train_rows', '–')}; {LABEL_MEAN_WORDS[task]} {label_mean}",
        f"- test set: data version `{tags.get('test_data_version', '–')}` "
        f"(run date {tags.get('run_date', '–')})", "",
        "## Features", "",
        *(f"- `{name}`" + (f" (monotone {'+' if facts.monotone[name] > 0 else '-'})"
                           if name in facts.monotone else "") for name in facts.features), "",
        "## Parameters", "",
        *(f"- {key}: `{value}`" for key, value in sorted(facts.params.items())), "",
        "## Metrics on its test set", "",
        "| metric | value |", "| --- | --- |",
        *(f"| {name} | {_f(facts.metrics.get(name))} |" for name in SUMMARY[task]), "",
        "## Metrics by slice", "",
    ]
    if facts.slices:
        columns = (LABEL_MEAN[task], *SLICE_METRICS[task])
        lines += [f"| slice | rows | {' | '.join(columns)} | compared |",
                  "| --- | --- | --- | --- | --- | --- |"]
        lines += [f"| {s.scope} | {s.rows} | "
                  + "".join(f"{_f(s.challenger.get(c))} | " for c in columns)
                  + f"{s.skipped or 'yes'} |" for s in facts.slices]
    else:
        lines.append("Pending: the champion gate computes them.")
    lines += ["", "## Known limits", "", *(f"- {limit}" for limit in cfg.model.known_limits),
              "", "## Gate decision", ""]
    if facts.decision is None:
        lines.append("Pending: the champion gate has not evaluated this version yet.")
    else:
        verdict = "promoted" if facts.decision.promote else "rejected"
        lines += [f"**{verdict}**" + (f" (evidence report: `{facts.report_uri}`)"
                                      if facts.report_uri else ""), "",
                  *(f"- {'PASS' if r.passed else 'FAIL'} {r.describe()}"
                    for r in facts.decision.rules)]
    lines += ["", "## Lineage", "",
              f"- MLflow run `{facts.run_id}`; code version `{tags.get('code_version', '–')}`",
              f"- device {tags.get('device', '–')}, XGBoost {tags.get('xgboost_version', '–')}, "
              f"seed {tags.get('seed', '–')}, model sha256 `{tags.get('model_sha256', '–')}`",
              f"- reproduce: `precast retrain --like {facts.version}`", ""]
    return "\n".join(lines)


def log(cfg: Config, facts: CardFacts) -> str:
    """Render the card, store it on the version's run, tag the version with its URI."""
    folder = registry.log_artifacts(cfg, facts.run_id, "card",
                                    {CARD_FILE: render(cfg, facts)}, [])
    uri = f"{folder}/{CARD_FILE}"
    registry.tag_version(cfg, facts.version, {"model_card": uri})
    return uri


def run_params(cfg: Config, run_id: str) -> dict[str, Any]:
    """The parameters logged on a training run (for the card)."""
    return dict(registry.client(cfg).get_run(run_id).data.params)


def monotone_of(params: Mapping[str, Any]) -> dict[str, int]:
    """The monotone constraints a run logged (param `monotone`, JSON), else none."""
    try:
        value = json.loads(str(params.get("monotone", "{}")))
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in value.items()} if isinstance(value, dict) else {}
