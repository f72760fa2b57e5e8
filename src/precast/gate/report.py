"""The champion gate's evidence report: one self-contained HTML file per gate run.

Pictures first, by model.task. Binary: ROC and precision-recall curves of both models
overlaid and a reliability (calibration) plot. Regression: predicted against actual values
(with the diagonal) and the distribution of residuals (prediction − label). Then for both:
the gate metric per slice with the tolerance band, and the top feature importances of each
model; then the decision table (every rule with its numbers), the data and code versions,
and the slice table. The label is named by model.target_description. Charts are inline SVG
(matplotlib), styles inline: the file opens offline in any browser, attached to MLflow or
mailed as is.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from precast.config import Config, redact_text
from precast.html_report import esc, page
from precast.html_report import figure as _figure
from precast.html_report import num as _num
from precast.html_report import svg as _svg
from precast.metrics import HIGHER_IS_BETTER, LABEL_MEAN, LABEL_MEAN_WORDS, SUMMARY

if TYPE_CHECKING:
    from precast.gate.evidence import Decision, Evaluation, Scored

CHALLENGER_COLOR, CHAMPION_COLOR = "#d95f02", "#1b9e77"
CURVE_POINTS = 400  # curves are thinned to this many points (the file stays small)
TOP_FEATURES = 15



def report_path(cfg: Config, run_date: date, challenger: str, champion: str | None) -> Path:
    """Where a gate run's report goes: <home>/reports/gate/<run date>/..."""
    against = f"-vs-v{champion}" if champion else "-first"
    folder = cfg.space / "reports" / "gate" / run_date.isoformat()
    return folder / f"gate-v{challenger}{against}.html"


def write(cfg: Config, run_date: date, evaluation: Evaluation, decision: Decision,
          record: dict[str, Any]) -> Path:
    """Render the report for one gate run; its path."""
    path = report_path(cfg, run_date, evaluation.challenger.version,
                       evaluation.champion.version if evaluation.champion else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact_text(render(cfg, evaluation, decision, record)), encoding="utf-8")
    return path


def render(cfg: Config, evaluation: Evaluation, decision: Decision, record: dict[str, Any]) -> str:
    """The whole HTML document."""
    verdict = record["decision"]
    champ = f"v{evaluation.champion.version}" if evaluation.champion else "no champion yet"
    title = f"{cfg.model.name}: challenger v{evaluation.challenger.version} vs {champ}"
    metric = cfg.gate.metric
    band = "less" if HIGHER_IS_BETTER[metric] else "plus"
    figures = [
        *_task_figures(cfg, evaluation),
        (f"{metric} per slice (bars); shaded: the champion's value {band} the slice tolerance "
         f"{cfg.gate.slice_tolerance:g}", _slices(evaluation, metric, cfg.gate.slice_tolerance)),
        (f"Top {TOP_FEATURES} features by gain", _importances(evaluation)),
    ]
    body = [
        f"<h1>{esc(title)}</h1>",
        f'<p><span class="verdict {verdict}">{verdict.upper()}</span> '
        f"{len(decision.rules) - len(decision.failed())} of {len(decision.rules)} rules passed"
        f" &middot; gate metric {esc(metric)} &middot; test set of {evaluation.test_date} "
        f"({len(evaluation.labels):,} rows, {_label_words(cfg)} "
        f"{evaluation.labels.mean():.3f}) &middot; "
        f"written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        '<div class="grid">',
        *(f"<figure>{svg}<figcaption>{esc(caption)}</figcaption></figure>"
          for caption, svg in figures if svg),
        "</div>",
        "<h2>Decision</h2>", _ceilings(decision), _rules_table(decision),
        "<h2>Metrics on the whole test set</h2>", _metrics_table(evaluation, cfg.model.task),
        "<h2>Versions</h2>", _versions_table(evaluation),
        "<h2>Slices</h2>", _slices_table(evaluation, metric, cfg),
    ]
    return page(title, body)


def _label_words(cfg: Config) -> str:
    """How the label's mean is named: "label rate (cancels within 14 days)"."""
    return f"{LABEL_MEAN_WORDS[cfg.model.task]} ({cfg.model.target_description})"


def _task_figures(cfg: Config, evaluation: Evaluation) -> list[tuple[str, str]]:
    """The charts that depend on model.task, with their captions."""
    if cfg.model.task == "regression":
        return [(f"Predicted vs actual {cfg.model.target_description} (dotted: perfect)",
                 _predicted_vs_actual(evaluation)),
                ("Residuals (prediction − label): their distribution on the test set",
                 _residuals(evaluation))]
    return [("ROC curve", _curves(evaluation, "roc")),
            ("Precision-recall curve", _curves(evaluation, "pr")),
            (f"Reliability: mean score vs observed rate per score bin (label: "
             f"{cfg.model.target_description})", _calibration(evaluation))]


# ---------------------------------------------------------------- charts


def _models(evaluation: Evaluation) -> list[tuple[str, Scored, str]]:
    challenger, champion = evaluation.challenger, evaluation.champion
    out = [(f"challenger v{challenger.version}", challenger, CHALLENGER_COLOR)]
    if champion is not None:
        out.append((f"champion v{champion.version}", champion, CHAMPION_COLOR))
    return out


def _thin(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(x) <= CURVE_POINTS:
        return x, y
    keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).astype(int))
    return x[keep], y[keep]


def _curves(evaluation: Evaluation, kind: str) -> str:
    from sklearn import metrics as skm

    if len(np.unique(evaluation.labels)) < 2:
        return ""
    fig, ax = _figure()
    for label, scored, color in _models(evaluation):
        if kind == "roc":
            x, y, _ = skm.roc_curve(evaluation.labels, scored.scores)
            value = f"AUC {scored.metrics['roc_auc']:.3f}"
        else:
            y, x, _ = skm.precision_recall_curve(evaluation.labels, scored.scores)
            value = f"AP {scored.metrics['pr_auc']:.3f}"
        ax.plot(*_thin(x, y), color=color, label=f"{label} ({value})")
    if kind == "roc":
        ax.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1)
        ax.set(xlabel="false positive rate", ylabel="true positive rate")
    else:
        ax.axhline(evaluation.labels.mean(), color="#999", linestyle=":", linewidth=1)
        ax.set(xlabel="recall", ylabel="precision")
    ax.set(xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right" if kind == "roc" else "upper right", fontsize=8)
    return _svg(fig)


def _calibration(evaluation: Evaluation, bins: int = 10) -> str:
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], color="#999", linestyle=":", linewidth=1, label="perfect")
    edges = np.linspace(0, 1, bins + 1)
    for label, scored, color in _models(evaluation):
        index = np.clip(np.digitize(scored.scores, edges[1:-1]), 0, bins - 1)
        filled = [b for b in range(bins) if (index == b).any()]
        mean_score = [scored.scores[index == b].mean() for b in filled]
        observed = [evaluation.labels[index == b].mean() for b in filled]
        ece = scored.metrics["calibration_error"]
        ax.plot(mean_score, observed, marker="o", color=color,
                label=f"{label} (ECE {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in bin", ylabel="observed rate")
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def _sample(rows: int, limit: int = 2000) -> np.ndarray:
    """At most `limit` row indices, evenly spread (scatter plots stay small)."""
    return np.unique(np.linspace(0, rows - 1, min(rows, limit)).astype(int))


def _predicted_vs_actual(evaluation: Evaluation) -> str:
    fig, ax = _figure()
    keep = _sample(len(evaluation.labels))
    for label, scored, color in _models(evaluation):
        ax.scatter(evaluation.labels[keep], scored.scores[keep], s=6, alpha=0.4, color=color,
                   label=f"{label} (RMSE {scored.metrics['rmse']:.4g})")
    low = float(min(evaluation.labels.min(), *(s.scores.min() for _, s, _ in _models(evaluation))))
    high = float(max(evaluation.labels.max(), *(s.scores.max() for _, s, _ in _models(evaluation))))
    ax.plot([low, high], [low, high], color="#999", linestyle=":", linewidth=1)
    ax.set(xlabel="actual", ylabel="predicted")
    ax.legend(loc="upper left", fontsize=8)
    return _svg(fig)


def _residuals(evaluation: Evaluation) -> str:
    fig, ax = _figure()
    residuals = [(label, scored.scores - evaluation.labels, color) for label, scored, color in
                 _models(evaluation)]
    edges = np.histogram_bin_edges(np.concatenate([r for _, r, _ in residuals]), 40).tolist()
    for label, values, color in residuals:
        ax.hist(values, bins=edges, alpha=0.55, color=color,
                label=f"{label} (bias {values.mean():+.4g})")
    ax.axvline(0, color="#999", linestyle=":", linewidth=1)
    ax.set(xlabel="prediction − label", ylabel="rows")
    ax.legend(loc="upper right", fontsize=8)
    return _svg(fig)


def _slices(evaluation: Evaluation, metric: str, tolerance: float) -> str:
    compared = [s for s in evaluation.slices if not s.skipped]
    if not compared:
        return ""
    fig, ax = _figure(7.2, max(2.5, 0.32 * len(compared) + 1.2))
    rows = np.arange(len(compared))
    height = 0.38 if evaluation.champion is not None else 0.6
    chal = [s.challenger[metric] for s in compared]
    ax.barh(rows - (height / 2 if evaluation.champion else 0), chal, height, color=CHALLENGER_COLOR,
            label=f"challenger v{evaluation.challenger.version}")
    if evaluation.champion is not None:
        champ = [s.champion[metric] if s.champion else np.nan for s in compared]
        ax.barh(rows + height / 2, champ, height, color=CHAMPION_COLOR,
                label=f"champion v{evaluation.champion.version}")
        sign = -1 if HIGHER_IS_BETTER[metric] else 1
        for row, value in zip(rows, champ, strict=True):
            ax.fill_betweenx([row - 0.45, row + 0.45], value, value + sign * tolerance,
                             color="#888", alpha=0.35, linewidth=0)
    ax.set_yticks(rows, [s.scope for s in compared], fontsize=8)
    ax.invert_yaxis()
    finite = [v for v in chal if np.isfinite(v)]
    low = min(finite, default=0.0)
    bounded = metric in ("roc_auc", "pr_auc")  # at most 1
    ax.set_xlim(max(0.0, low - 0.1) if HIGHER_IS_BETTER[metric] else 0.0,
                1.0 if bounded else None)
    ax.set_xlabel(metric)
    ax.legend(loc="lower right", fontsize=8)
    return _svg(fig)


def _importances(evaluation: Evaluation) -> str:
    models = _models(evaluation)
    fig = _figure(4.2 * len(models), 4.6)[0]
    fig.clear()
    for position, (label, scored, color) in enumerate(models, start=1):
        ax = fig.add_subplot(1, len(models), position)
        top = sorted(scored.importance.items(), key=lambda kv: kv[1], reverse=True)
        top = top[:TOP_FEATURES]
        ax.barh([name for name, _ in top], [value for _, value in top], color=color)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
        ax.set(title=label, xlabel="gain")
    return _svg(fig)


# ---------------------------------------------------------------- tables


def _rules_table(decision: Decision) -> str:
    rows = ["<table><tr><th>rule</th><th>scope</th><th>challenger</th><th>champion</th>"
            "<th>bound</th><th>result</th></tr>"]
    for rule in decision.rules:
        state = "pass" if rule.passed else "fail"
        rows.append(f'<tr class="{state}"><td>{esc(rule.name)}</td><td>{esc(rule.scope)}</td>'
                    f"{_num(rule.value)}{_num(rule.champion)}{_num(rule.bound)}"
                    f'<td class="ok">{state.upper()}</td></tr>')
    return "".join(rows) + "</table>"


def _ceilings(decision: Decision) -> str:
    """A note when floors bound metrics where lower is better (they are ceilings)."""
    lower = sorted({r.metric for r in decision.rules if r.name.startswith("floor ")
                    and not HIGHER_IS_BETTER.get(r.metric, True)})
    if not lower:
        return ""
    return (f"<p>Floors on {esc(', '.join(lower))}, where lower is better, are ceilings: the "
            "challenger must be at or below them.</p>")


def _metrics_table(evaluation: Evaluation, task: str) -> str:
    models = _models(evaluation)
    head = "".join(f"<th>{esc(label)}</th>" for label, _, _ in models)
    rows = [f"<table><tr><th>metric</th>{head}</tr>"]
    for metric in SUMMARY[task]:
        cells = "".join(_num(scored.metrics.get(metric)) for _, scored, _ in models)
        rows.append(f"<tr><td>{metric}</td>{cells}</tr>")
    return "".join(rows) + "</table>"


def _versions_table(evaluation: Evaluation) -> str:
    models = _models(evaluation)
    head = "".join(f"<th>{esc(label)}</th>" for label, _, _ in models)
    rows = [f"<table><tr><th></th>{head}</tr>"]
    facts = [("training run date", "run_date"), ("training data version", "data_version"),
             ("its test data version", "test_data_version"), ("code version", "code_version"),
             ("MLflow run", "run_id"), ("device", "device"), ("seed", "seed")]
    for title, key in facts:
        cells = "".join(f"<td>{esc(scored.tags.get(key, '–'))}</td>" for _, scored, _ in models)
        rows.append(f"<tr><td>{title}</td>{cells}</tr>")
    rows.append(f"<tr><td>gate test set</td><td colspan={len(models)}>{evaluation.test_date}, data "
                f"version {esc(evaluation.test_data_version)}</td></tr>")
    return "".join(rows) + "</table>"


def _slices_table(evaluation: Evaluation, metric: str, cfg: Config) -> str:
    champion = evaluation.champion is not None
    label_mean = LABEL_MEAN[cfg.model.task]
    rows = [f"<table><tr><th>slice</th><th>rows</th><th>{esc(_label_words(cfg))}</th>"
            f"<th>challenger {metric}</th>" + (f"<th>champion {metric}</th>" if champion else "")
            + "<th>compared</th></tr>"]
    for s in evaluation.slices:
        champ = _num(s.champion[metric]) if champion and s.champion else ""
        rows.append(f"<tr><td>{esc(s.scope)}</td><td class=num>{s.rows:,}</td>"
                    f"{_num(s.challenger[label_mean])}{_num(s.challenger[metric])}{champ}"
                    f"<td>{esc(s.skipped or 'yes')}</td></tr>")
    return "".join(rows) + "</table>"
