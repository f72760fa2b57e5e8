"""The monitoring report: one self-contained HTML file per monitor run.

Metric trends over snapshots (binary: realised and estimated ROC AUC, with the alert
floor; regression: realised RMSE with monitor.max_rmse, and no estimate, since regression
has no label-free one), PSI of every feature and the score against the threshold, and the
score distribution of the training reference against the current snapshot (on [0, 1] for
binary, on the scores' own range for regression); then the drift table and the run's
alerts. Written to `$PRECAST_HOME/reports/monitor/<date>/`; opens offline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from precast.config import Config, redact_text
from precast.html_report import esc, figure, num, page, svg
from precast.monitoring import model_metrics

if TYPE_CHECKING:
    from precast.monitoring.alerts import Alert
    from precast.monitoring.drift import FeatureDrift

REFERENCE_COLOR, CURRENT_COLOR, ESTIMATE_COLOR = "#1b9e77", "#d95f02", "#7570b3"
NOT_ALERTED_COLOR = "#9e9e9e"


def report_path(cfg: Config, run_date: date) -> Path:
    return cfg.space / "reports" / "monitor" / run_date.isoformat() / f"monitor-{run_date}.html"


def write(cfg: Config, run_date: date, model_version: str, reference_scores: np.ndarray,
          current_scores: np.ndarray, report: Sequence[FeatureDrift],
          alerts: Sequence[Alert]) -> Path:
    """Render the report of one monitor run; its path."""
    path = report_path(cfg, run_date)
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"{cfg.model.name} monitoring, {run_date} (champion v{model_version})"
    trend = ("ROC AUC by snapshot: realised once labels are in, estimated from the scores before"
             if cfg.model.task == "binary" else
             "RMSE by snapshot, realised once labels are in (regression: no estimate before)")
    figures = [
        (trend, _trend(cfg, run_date)),
        (f"PSI against the training reference (alert above {cfg.monitor.psi_max:g})",
         _psi(report, cfg.monitor.psi_max, cfg.monitor.feature_limits)),
        ("Score distribution: training reference vs this snapshot",
         _scores(reference_scores, current_scores, cfg.model.task == "binary")),
    ]
    body = [f"<h1>{esc(title)}</h1>",
            f"<p>{len(report)} features and the score checked &middot; "
            f"{len(alerts)} alert(s) this run</p>", '<div class="grid">',
            *(f"<figure>{chart}<figcaption>{esc(caption)}</figcaption></figure>"
              for caption, chart in figures if chart),
            "</div>", "<h2>Alerts</h2>", _alerts_table(alerts),
            "<h2>Drift</h2>", _drift_table(report)]
    path.write_text(redact_text(page(title, body)), encoding="utf-8")
    return path


def _trend(cfg: Config, run_date: date) -> str:
    """Realised and estimated ROC AUC (regression: realised RMSE) of the snapshots up to
    `run_date` (a rerun of an old day shows what was known then, not later days)."""
    binary = cfg.model.task == "binary"
    metric, limit = ("roc_auc", cfg.monitor.min_roc_auc) if binary else (
        "rmse", cfg.monitor.max_rmse)
    realised, estimated = ([p for p in model_metrics.trend(cfg, kind, metric)
                            if p[0] <= run_date] for kind in ("performance", "estimate"))
    if not realised and not estimated:
        return ""
    fig, ax = figure(6.4, 3.8)
    for points, label, color in ((realised, "realised", CURRENT_COLOR),
                                 (estimated, "estimated (scores only)", ESTIMATE_COLOR)):
        if points:
            ax.plot(np.array([p[0] for p in points], dtype="datetime64[D]"),
                    [np.nan if p[2] is None else p[2] for p in points],
                    marker="o", color=color, label=label)
    if limit is not None:
        ax.axhline(limit, color="#c62828", linestyle=":", linewidth=1,
                   label=f"alert {'below' if binary else 'above'} {limit:g}")
    ax.set(ylabel="ROC AUC" if binary else "RMSE", xlabel="snapshot")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.legend(fontsize=8)
    return svg(fig)


def _psi(report: Sequence[FeatureDrift], limit: float,
         per_feature: Mapping[str, Mapping[str, float | None]]) -> str:
    """PSI bars against each feature's limit; a feature not alerted on PSI is grey, and the
    axis ends a little past the judged values (a longer bar is cut and labelled)."""
    if not report:
        return ""
    fig, ax = figure(6.4, max(2.5, 0.28 * len(report) + 1.0))
    limits = [per_feature.get(d.feature, {}).get("psi_max", limit) for d in report]
    values = [d.psi for d in report]
    colors = [NOT_ALERTED_COLOR if lim is None else "#c62828" if v > lim else REFERENCE_COLOR
              for v, lim in zip(values, limits, strict=True)]
    labels = [d.feature + (" (not alerted)" if lim is None else "")
              for d, lim in zip(report, limits, strict=True)]
    judged = [v for v, lim in zip(values, limits, strict=True) if lim is not None and v == v]
    right = 1.1 * max([4 * limit, *judged])
    ax.barh(labels, np.minimum(values, right), color=colors)
    for row, value in enumerate(values):
        if value > right:
            ax.text(right, row, f"{value:.2f} \u25b8 ", va="center", ha="right", fontsize=7,
                    color="white")
    ax.axvline(limit, color="#c62828", linestyle=":", linewidth=1)
    ax.set_xlim(0, right)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=8)
    ax.set_xlabel("PSI")
    return svg(fig)


def _scores(reference: np.ndarray, current: np.ndarray, probabilities: bool) -> str:
    """Histograms of both samples: on [0, 1] for probabilities, else on their joint range."""
    fig, ax = figure(5.4, 3.8)
    both = np.concatenate([reference, current])
    bins = (np.linspace(0, 1, 41) if probabilities
            else np.histogram_bin_edges(both[np.isfinite(both)], bins=40)).tolist()
    ax.hist(reference, bins=bins, density=True, alpha=0.55, color=REFERENCE_COLOR,
            label=f"training reference ({len(reference):,})")
    ax.hist(current, bins=bins, density=True, alpha=0.55, color=CURRENT_COLOR,
            label=f"this snapshot ({len(current):,})")
    ax.set(xlabel="score", ylabel="density")
    ax.legend(fontsize=8)
    return svg(fig)


def _alerts_table(alerts: Sequence[Alert]) -> str:
    if not alerts:
        return "<p>None.</p>"
    rows = ["<table><tr><th>snapshot</th><th>rule</th><th>subject</th><th>severity</th>"
            "<th>value</th><th>threshold</th><th>message</th></tr>"]
    rows += [f"<tr><td>{a.snapshot_date}</td><td>{esc(a.rule)}</td><td>{esc(a.subject)}</td>"
             f"<td>{a.severity}</td>{num(a.value)}{num(a.threshold)}<td>{esc(a.message)}</td>"
             "</tr>" for a in alerts]
    return "".join(rows) + "</table>"


def _drift_table(report: Sequence[FeatureDrift]) -> str:
    rows = ["<table><tr><th>feature</th><th>PSI</th><th>test</th><th>statistic</th>"
            "<th>p-value</th><th>missing (ref)</th><th>missing (now)</th><th>OOV</th></tr>"]
    rows += [f"<tr><td>{esc(d.feature)}</td>{num(d.psi)}<td>{d.test}</td>{num(d.statistic)}"
             f"{num(d.p_value)}{num(d.missing_rate_ref)}{num(d.missing_rate_cur)}"
             f"{num(d.oov_rate)}</tr>" for d in report]
    return "".join(rows) + "</table>"
