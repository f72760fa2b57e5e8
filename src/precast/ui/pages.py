"""The precast view's HTML: self-contained pages (inline styles and SVG, no scripts or fonts
from anywhere), shown in the Airflow UI's frame. Links to Airflow's own pages open in the
top window."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from precast.gate.champions import ChampionPeriod
from precast.html_report import STYLE, esc
from precast.store import SnapshotInfo
from precast.ui import MOUNT
from precast.ui.runs import ROLES, RunInfo
from precast.ui.status import Report, StoreView, Validation

VIEW_STYLE = STYLE + """
body { margin: 1em; max-width: none; } h1 { margin-top: 0; }
.state { display: inline-block; padding: 0 .5em; border-radius: 3px; color: #fff;
         font-size: .85em; } .success { background: #1a7f37; } .failed { background: #c62828; }
.running, .queued { background: #b8860b; } .none { background: #999; }
.stale { color: #c62828; font-weight: 600; } .fresh { color: #1a7f37; }
.warning { color: #b8860b; } .critical { color: #c62828; font-weight: 600; }
form.inline { display: flex; gap: .4em; align-items: center; margin: 0; }
input[name=reason] { width: 18em; } .served td { background: #eef7ee; }
.empty { border: 1px dashed #bbb; padding: 1em 1.4em; max-width: 60em; }
code { background: #f4f4f4; padding: 0 .3em; } nav a { margin-right: 1em; }
svg.trend { vertical-align: middle; }
"""


@dataclass(frozen=True)
class UseCaseRow:
    """One line of the overview."""

    name: str
    view: StoreView | None
    problem: str | None  # why the store could not be read
    runs: dict[str, RunInfo | None]
    stale: bool
    freshness: str


def airflow_base(root: str) -> str:
    """Airflow's own UI path, from the view's (mounted at <Airflow base>/precast)."""
    return root[: -len(MOUNT)] if root.endswith(MOUNT) else ""


def _page(title: str, body: Sequence[str], refresh_s: int | None = None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width'>{meta}<title>{esc(title)}</title>"
            f"<style>{VIEW_STYLE}</style></head><body>{''.join(body)}</body></html>")


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if moment else "—"


def age(moment: datetime | None, now: datetime) -> str:
    """'3 h', '2 d': how long ago."""
    if moment is None:
        return "—"
    seconds = max(0, (now - moment).total_seconds())
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _airflow_run(base: str, run: RunInfo) -> str:
    """A link to the run's page in Airflow itself (top window), with its state."""
    href = f"{airflow_base(base)}/dags/{quote(run.dag_id)}/runs/{quote(run.run_id)}"
    return (f'<a target="_top" href="{esc(href)}"><span class="state {esc(run.state)}">'
            f"{esc(run.state)}</span></a>")


def _runs_cell(base: str, runs: dict[str, RunInfo | None]) -> str:
    """The newest run of each of the use case's DAGs, with its state."""
    parts = []
    for role in ROLES:
        found = runs.get(role)
        state = _airflow_run(base, found) if found else '<span class="state none">none</span>'
        parts.append(f"{esc(role)} {state}")
    return "<br>".join(parts)


def _nav(base: str, names: Sequence[str]) -> str:
    links = "".join(f'<a href="{base}/uc/{quote(n)}">{esc(n)}</a>' for n in names)
    return (f'<nav><a href="{base}/">overview</a>{links}'
            f'<a target="_top" href="{esc(airflow_base(base))}/">Airflow</a></nav>')


def empty_state(first_use_case: str | None) -> str:
    """What to run when nothing is published yet."""
    uc = first_use_case or "churn"
    return (
        '<div class="empty"><h2>Nothing published yet</h2>'
        "<p>The view fills in once a use case has a champion and a published snapshot. "
        "On one machine, with the demo's logs:</p><ol>"
        f"<li><code>precast --use-case examples/{esc(uc)} demo-data --until today</code>: logs "
        "up to today, so the daily schedules find data;</li>"
        f"<li>trigger <code>{esc(uc)}__training</code> (or wait for its schedule): it trains, "
        f"and a promoted champion starts <code>{esc(uc)}__predict</code>, which publishes;</li>"
        f"<li><code>{esc(uc)}__monitor</code> follows every publish.</li></ol>"
        "<p>Your own logs: <code>precast init FOLDER</code> writes a use-case skeleton "
        "(docs/use-cases.md).</p></div>")


def overview(base: str, rows: Sequence[UseCaseRow], now: datetime) -> str:
    names = [r.name for r in rows]
    body = [_nav(base, names), "<h1>precast</h1>"]
    if not rows:
        body.append('<p class="muted">No use case is configured for this Airflow: set '
                    "PRECAST_USE_CASES (folders, separated by <code>:</code>) or "
                    "PRECAST_CONFIG for the api-server and the DAG processor.</p>")
        body.append(empty_state(None))
        return _page("precast", body)
    body.append("<table><tr><th>use case</th><th>champion</th><th>served snapshot</th>"
                "<th>freshness</th><th>last runs</th><th>open alerts</th></tr>")
    for row in rows:
        link = f'<a href="{base}/uc/{quote(row.name)}"><b>{esc(row.name)}</b></a>'
        body.append(f"<tr><td>{link}</td>")
        if row.problem or row.view is None:
            body.append(f'<td colspan=3 class="stale">{esc(row.problem or "?")}</td>')
        else:
            champ, served = row.view.champion, row.view.served
            body.append(f"<td>{_champion_text(champ)}</td>" if champ else
                        '<td class="muted">none yet</td>')
            body.append(f"<td>{_served_text(served, now)}</td>" if served else
                        '<td class="muted">none published</td>')
            body.append(f'<td class="{"stale" if row.stale else "fresh"}">'
                        f"{esc(row.freshness)}</td>")
        body.append(f"<td>{_runs_cell(base, row.runs)}</td>")
        alerts = row.view.alerts_open if row.view else 0
        body.append(f'<td class="num {"critical" if alerts else ""}">'
                    f'<a href="{base}/uc/{quote(row.name)}#alerts">{alerts}</a></td></tr>')
    body.append("</table>")
    if all(r.view is not None and r.view.served is None for r in rows):
        body.append(empty_state(rows[0].name))
    return _page("precast", body)


def _champion_text(champ: ChampionPeriod) -> str:
    pin = " 📌 pinned" if champ.pinned else ""
    return (f"<b>v{esc(champ.model_version)}</b>{pin} since {_when(champ.valid_from)}<br>"
            f'<span class="muted">decision: {esc(champ.decision)}, by {esc(champ.decided_by)}'
            "</span>")


def _served_text(served: SnapshotInfo, now: datetime) -> str:
    return (f"<b>#{served.snapshot_id}</b> for {served.snapshot_date} · "
            f"{served.row_count or 0:,} rows · v{esc(served.model_version)}<br>"
            f'<span class="muted">published {age(served.published_at, now)} ago</span>')


def trend_svg(points: Sequence[float | None], width: int = 220, height: int = 44) -> str:
    """A sparkline (inline SVG) of the finite values, oldest to newest."""
    values = [v for v in points if v is not None]
    if len(values) < 2:
        return '<span class="muted">too few points</span>'
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (width - 4) / (len(values) - 1)
    coords = " ".join(f"{2 + i * step:.1f},{height - 2 - (v - low) / span * (height - 4):.1f}"
                      for i, v in enumerate(values))
    return (f'<svg class="trend" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<polyline fill="none" stroke="#1b6ac9" stroke-width="1.5" points="{coords}"/>'
            "</svg>")


@dataclass(frozen=True)
class UseCasePage:
    """Everything a use case's page shows."""

    name: str
    view: StoreView
    runs: dict[str, RunInfo | None]
    reports: list[Report]
    validations: list[Validation]
    stale: bool
    freshness: str
    csrf: str
    can_act: bool
    names: list[str]
    root: str  # the view's own path (where Airflow mounted it)


def use_case(page: UseCasePage, now: datetime) -> str:
    v, name, base = page.view, page.name, page.root
    body = [_nav(base, page.names), f"<h1>{esc(name)}</h1>"]
    champ, served = v.champion, v.served
    body.append("<h2>Served now</h2><table>")
    body.append(f"<tr><th>champion</th><td>{_champion_text(champ) if champ else 'none yet'}"
                "</td></tr>")
    body.append(f"<tr><th>snapshot</th><td>{_served_text(served, now) if served else 'none'}"
                "</td></tr>")
    body.append(f'<tr><th>freshness</th><td class="{"stale" if page.stale else "fresh"}">'
                f"{esc(page.freshness)}</td></tr>")
    body.append(f"<tr><th>last runs</th><td>{_runs_cell(base, page.runs)}</td></tr>")
    body.append("</table>")
    if served is None and champ is None:
        body.append(empty_state(name))
    body += _history(page)
    body += _snapshots(page, now)
    body += _reports(page)
    body += _validations(page.validations)
    body += _trends(v)
    body += _alerts(v)
    return _page(f"precast · {name}", body)


def _reason_form(action: str, page: UseCasePage, fields: str, button: str) -> str:
    if not page.can_act:
        return '<span class="muted">read only</span>'
    target = f"{page.root}/uc/{quote(page.name)}/{action}"
    return (f'<form class="inline" method="post" action="{target}">'
            f'<input type="hidden" name="csrf" value="{esc(page.csrf)}">{fields}'
            '<input name="reason" required minlength="3" placeholder="reason (recorded)">'
            f"<button type=submit>{esc(button)}</button></form>")


def _history(page: UseCasePage) -> list[str]:
    out = ["<h2>Champion history</h2>"]
    champ = page.view.champion
    if champ is not None:
        action = "unpin" if champ.pinned else "pin"
        hidden = f"<input type=hidden name=action value={action}>"
        out.append(f"<p>{_reason_form('promote', page, hidden, f'{action} v{champ.model_version}')}"
                   "</p>")
    if not page.view.history:
        return [*out, '<p class="muted">no champion yet</p>']
    out.append("<table><tr><th>version</th><th>from</th><th>until</th><th>decision</th>"
               "<th>by</th><th>reason</th><th>evidence</th><th></th></tr>")
    reports = {r.name: _report_url(page, r) for r in page.reports}
    for p in page.view.history:
        current = p.valid_to is None
        promote = "" if current else _reason_form(
            "promote", page, f"<input type=hidden name=action value=force>"
            f"<input type=hidden name=version value='{esc(p.model_version)}'>",
            f"promote v{p.model_version}")
        out.append(f"<tr{' class=served' if current else ''}><td>v{esc(p.model_version)}</td>"
                   f"<td>{_when(p.valid_from)}</td><td>{_when(p.valid_to) if p.valid_to else 'now'}"
                   f"</td><td>{esc(p.decision)}</td><td>{esc(p.decided_by)}</td>"
                   f"<td>{esc(p.reason)}</td><td>{_evidence(p.evidence, reports)}</td>"
                   f"<td>{promote}</td></tr>")
    out.append("</table>")
    return out


def targets_by_snapshot(view: StoreView) -> dict[int, dict[str, str]]:
    """Snapshot id -> {target: label} of the rollbacks offered on its row: every retained
    snapshot not served; on the newest retained snapshot of a model version other than the
    champion's (the one `model:V` serves), also that version as champion."""
    champ = view.champion.model_version if view.champion else None
    out: dict[int, dict[str, str]] = {}
    versions: set[str] = set()
    for s in view.snapshots:  # newest first
        if s.status != "published":
            continue
        newest_of_version = s.model_version not in versions
        versions.add(s.model_version)
        if s.current:
            continue
        offered = out[s.snapshot_id] = {f"snapshot:{s.snapshot_id}":
                                        f"serve snapshot #{s.snapshot_id}"}
        if newest_of_version and s.model_version != champ:
            offered[f"model:{s.model_version}"] = (
                f"serve v{s.model_version} and make it the champion")
    return out


def rollback_targets(view: StoreView) -> dict[str, str]:
    """target -> label of every rollback the page offers (what a posted form may name)."""
    return {t: label for offered in targets_by_snapshot(view).values()
            for t, label in offered.items()}


def _snapshots(page: UseCasePage, now: datetime) -> list[str]:
    out = ["<h2>Snapshots</h2>"]
    if not page.view.snapshots:
        return [*out, '<p class="muted">none published yet</p>']
    offered = targets_by_snapshot(page.view)
    out.append("<table><tr><th>#</th><th>date</th><th>status</th><th>rows</th><th>model</th>"
               "<th>published</th><th>lineage</th><th>activation / reason</th><th></th></tr>")
    for s in page.view.snapshots:
        action = ""
        if s.snapshot_id in offered:
            options = "".join(f"<option value='{esc(target)}'>{esc(label)}</option>"
                              for target, label in offered[s.snapshot_id].items())
            action = _reason_form("rollback", page, f"<select name=target>{options}</select>",
                                  "roll back")
        status = "served" if s.current else s.status
        lineage = (f"data {esc(s.data_version)}<br>train data "
                   f"{esc(s.training_data_version or '—')}<br>code {esc(s.code_version or '—')}"
                   f"<br>MLflow run {esc(s.mlflow_run_id or '—')}")
        why = (f"{esc(s.activated_by or '')}: {esc(s.activation_reason or '')}"
               if s.activated_by else "")
        if s.status == "failed":
            why = f'<span class="critical">{esc(s.note or "failed")}</span>'
        out.append(f"<tr{' class=served' if s.current else ''} id='snapshot-{s.snapshot_id}'>"
                   f"<td>{s.snapshot_id}</td><td>{s.snapshot_date}</td><td>{esc(status)}</td>"
                   f"<td class=num>{s.row_count or 0:,}</td><td>v{esc(s.model_version)}</td>"
                   f"<td>{_when(s.published_at)}</td><td class=muted>{lineage}</td>"
                   f"<td>{why}</td><td>{action}</td></tr>")
    out.append("</table>")
    return out


def _report_url(page: UseCasePage, report: Report) -> str:
    return (f"{page.root}/uc/{quote(page.name)}/report/{report.kind}/"
            f"{quote(report.run_date)}/{quote(report.name)}")


def _evidence(evidence: str | None, reports: dict[str, str]) -> str:
    """A champion decision's evidence; a gate report the view holds becomes a link."""
    if not evidence:
        return ""
    name = evidence.rsplit("/", 1)[-1]
    if name in reports:
        return f'<a href="{reports[name]}">{esc(name)}</a>'
    return esc(evidence)


def _reports(page: UseCasePage) -> list[str]:
    out = ["<h2>Gate and monitoring reports</h2>"]
    if not page.reports:
        return [*out, '<p class="muted">none yet</p>']
    out.append("<table><tr><th>kind</th><th>run date</th><th>report</th></tr>")
    for r in page.reports:
        href = _report_url(page, r)
        out.append(f"<tr><td>{r.kind}</td><td>{esc(r.run_date)}</td>"
                   f'<td><a href="{href}">{esc(r.name)}</a></td></tr>')
    out.append("</table>")
    return out


def _validations(validations: Sequence[Validation]) -> list[str]:
    out = ["<h2>Latest validation</h2>"]
    if not validations:
        return [*out, '<p class="muted">no validation has run yet</p>']
    out.append("<table><tr><th>dataset</th><th>run date</th><th>result</th>"
               "<th>expectations</th><th>failed expectations (what, on which values)</th></tr>")
    for v in validations:
        stats = v.statistics
        counted = (f"{stats.get('successful_expectations', '?')} of "
                   f"{stats.get('evaluated_expectations', '?')} passed" if stats else "")
        failed = "<br>".join(esc(f) for f in v.failed) or (
            esc(v.error.splitlines()[0]) if v.error else "")
        cls = "pass" if v.status == "success" else "fail"
        out.append(f"<tr class={cls}><td>{esc(v.dataset)}</td><td>{esc(v.run_date)}</td>"
                   f"<td class=ok>{esc(v.status)}</td><td>{counted}</td><td>{failed}</td></tr>")
    out.append("</table>")
    return out


def _trends(view: StoreView) -> list[str]:
    out = ["<h2>Metric trends</h2>"]
    if not view.series:
        return [*out, '<p class="muted">no monitoring figures yet</p>']
    out.append("<table><tr><th>kind</th><th>metric</th><th>trend</th><th>first</th>"
               "<th>latest</th><th>snapshots</th></tr>")
    for (kind, metric), points in sorted(view.series.items()):
        values = [p[2] for p in points]
        latest = next((x for x in reversed(values) if x is not None), None)
        first = next((x for x in values if x is not None), None)
        out.append(f"<tr><td>{esc(kind)}</td><td>{esc(metric)}</td>"
                   f"<td>{trend_svg(values)}</td><td class=num>{_num(first)}</td>"
                   f"<td class=num>{_num(latest)}</td><td class=num>{len(points)}</td></tr>")
    out.append("</table>")
    return out


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _alerts(view: StoreView) -> list[str]:
    out = [f"<h2 id=alerts>Alerts: {view.alerts_open} open, {view.alerts_total} in all</h2>"]
    for title, rows in (("open", view.open_alerts), ("newest", view.recent_alerts)):
        if not rows:
            continue
        out.append(f"<h3>{title}</h3><table><tr><th>snapshot</th><th>severity</th>"
                   "<th>rule</th><th>subject</th><th>message</th></tr>")
        out += [f"<tr><td>{esc(str(a['snapshot_date'])[:10])}</td>"
                f"<td class={esc(a['severity'])}>{esc(a['severity'])}</td>"
                f"<td>{esc(a['rule'])}</td><td>{esc(a['subject'])}</td>"
                f"<td>{esc(a['message'])}</td></tr>" for a in rows]
        out.append("</table>")
    if not view.alerts_total:
        out.append('<p class="muted">no alert raised</p>')
    return out


def run_page(base: str, name: str, run: RunInfo, names: list[str]) -> str:
    """A run the view started, refreshed until it ends."""
    conf = ", ".join(f"{k}={v}" for k, v in run.conf.items())
    body = [_nav(base, names), f"<h1>{esc(run.dag_id)}</h1>",
            f"<p>run <code>{esc(run.run_id)}</code> {_airflow_run(base, run)} "
            f"(<span id=run-state>{esc(run.state)}</span>)</p><p class=muted>{esc(conf)}</p>",
            f"<p>started {_when(run.start_date)}, ended {_when(run.end_date)}</p>",
            f'<p><a href="{base}/uc/{quote(name)}">back to {esc(name)}</a></p>']
    return _page(f"{run.dag_id} {run.state}", body, None if run.finished else 2)


def message(base: str, title: str, text: str) -> str:
    """A page that says why there is nothing else to show (a refusal, an unreadable store)."""
    return _page(title, [_nav(base, []), f"<h1>{esc(title)}</h1>"
                         f'<p class="critical">{esc(text)}</p>'])


def freshness(served: SnapshotInfo | None, cron: str, now: datetime) -> tuple[bool, str]:
    """(stale, why): stale when the served snapshot was published before the predict
    schedule's previous-but-one run, i.e. a whole scheduled run passed with no publish."""
    from croniter import croniter

    if served is None or served.published_at is None:
        return False, "nothing published"
    try:
        runs = croniter(cron, now.astimezone(UTC))
        last = runs.get_prev(datetime)
        before = runs.get_prev(datetime)
    except (ValueError, KeyError):
        return False, f"schedule {cron!r}: not a cron expression"
    published = served.published_at.astimezone(UTC)
    if published < before:
        return True, (f"stale: published {age(published, now)} ago; the predict schedule "
                      f"({cron}) ran at {_when(last)} and {_when(before)}")
    return False, f"fresh: published {age(published, now)} ago (schedule {cron})"

