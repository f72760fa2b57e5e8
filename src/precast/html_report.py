"""Self-contained HTML reports: one page, inline styles, charts as inline SVG.

Shared by the gate's evidence report (precast.gate.report) and the monitoring report
(precast.monitoring.report): nothing is fetched when the file opens, so it works offline,
attached to MLflow or mailed as is.
"""

from __future__ import annotations

import html
import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1180px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
.verdict { display: inline-block; padding: .3em .8em; border-radius: 4px; color: #fff;
           font-weight: 600; }
.promoted { background: #1a7f37; } .rejected { background: #c62828; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; } .grid figure { margin: 0; }
figcaption { color: #555; font-size: .9em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd;
        padding: .25em .6em; text-align: left; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.fail td { background: #fdecea; } tr.pass td.ok { color: #1a7f37; font-weight: 600; }
tr.fail td.ok { color: #c62828; font-weight: 600; } .muted { color: #777; }
"""


def figure(width: float = 5.4, height: float = 4.2) -> tuple[Figure, Axes]:
    """A matplotlib figure (no pyplot state, no display) with one axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    return fig, fig.add_subplot()


def svg(fig: Figure) -> str:
    """The figure as an inline <svg> element (no XML prologue, no external references)."""
    fig.tight_layout()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def esc(value: Any) -> str:
    """Text for HTML."""
    return html.escape(str(value))


def num(value: float | None) -> str:
    """A numeric table cell (4 decimals; a dash for a missing or non-finite value)."""
    if value is None or not np.isfinite(value):
        return '<td class="num muted">–</td>'
    return f'<td class="num">{value:.4f}</td>'


def page(title: str, body: list[str]) -> str:
    """The whole document."""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>")
