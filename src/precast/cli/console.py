"""What the CLI prints: one line per step, lookups, status, snapshots, champions and the
check report; the commands that print them are in precast.cli.main."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from precast.config import Config
from precast.pipeline import to_jsonable

if TYPE_CHECKING:
    pass

_KEYS = {  # the few facts worth a line, per step
    "extract": ("days", "read", "kept", "quarantined", "duplicates"),
    "train": ("model_version", "device", "best_iteration", "data_version", "metrics"),
    "gate": ("promoted", "challenger_version", "champion_version", "report_path"),
    "score": ("rows_in", "scored", "errors", "runner"),
    "publish": ("snapshot_id", "rows", "model_version", "table"),
    "monitor": ("model_version", "drift_breaches", "estimated_roc_auc", "labelled_snapshot",
                "alerts_raised", "report_path"),
}


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_short(v)}" for k, v in value.items()
                               if not isinstance(v, dict | list)) + "}"
    if isinstance(value, list):
        if len(value) > 3:
            return f"{len(value)} items"
        return "[" + "; ".join(_short(v) for v in value) + "]"
    return str(value)


def describe(step: str, result: Any) -> str:
    """A one-line description of a step's result."""
    data = to_jsonable(result)
    if not isinstance(data, dict):
        return _short(data)
    if "datasets" in data:
        return ", ".join(f"{d['kind']}: {d['rows']} rows, data_version={d['data_version']}"
                         + (f", label_mean={d['label_rate']:.3f}" if d["label_rate"] else "")
                         for d in data["datasets"])
    if step.startswith("validate"):
        return f"suite(s) passed: {_short(data.get('suite', data.get('suites', '')))}"
    keys = [k for k in _KEYS.get(step, ()) if k in data] or list(data)[:6]
    return ", ".join(f"{k}={_short(data[k])}" for k in keys)


def print_step(step: str, result: Any, seconds: float) -> None:
    print(f"  {step:<22} {seconds:6.1f}s  {describe(step, result)}", flush=True)


def print_lookups(rows: list[Any]) -> None:
    for row in rows:
        if row.found:
            print(f"  {row.entity_id}: score={row.score:.4f} model_version={row.model_version} "
                  f"snapshot={row.snapshot_id} scored_at={row.scored_at}")
        else:
            fallback = "none" if row.score is None else f"{row.score:.4f}"
            print(f"  {row.entity_id}: no prediction in snapshot {row.snapshot_id} "
                  f"(fallback score={fallback})")


def print_snapshots(infos: list[Any]) -> None:
    print(f"{'id':>5} {'date':<10} {'model':<22} {'rows':>10} {'status':<9} activated")
    for i in infos:
        mark = "*" if i.current else " "
        who = f"{i.activated_at:%Y-%m-%d %H:%M} by {i.activated_by}" if i.activated_at else ""
        rows = "" if i.row_count is None else f"{i.row_count:,}"
        model = f"{i.model_name} v{i.model_version}"
        print(f"{i.snapshot_id:>4}{mark} {i.snapshot_date} {model:<22} {rows:>10} {i.status:<9} "
              f"{who}")
    print("* = served by predictions_current")


def print_rollback(result: Any) -> None:
    moved = " (champion alias moved)" if result.champion_moved else ""
    print(f"serving snapshot {result.snapshot_id}: {result.model_name} v{result.model_version}"
          f"{moved}; was snapshot {result.previous_snapshot_id}")


def print_champions(periods: Any) -> None:
    """champion_history, newest first, one line per period."""
    if not periods:
        print("no champion recorded yet")
    for p in periods:
        until = f"{p.valid_to:%Y-%m-%d %H:%M}" if p.valid_to else "now"
        evidence = f"  [{p.evidence}]" if p.evidence else ""
        print(f"v{p.model_version:<5} {p.valid_from:%Y-%m-%d %H:%M} .. {until:<16} "
              f"{p.decision:<8} by {p.decided_by}: {p.reason}{evidence}")


def print_status(cfg: Config) -> None:
    from precast import pipeline, store
    from precast.gate import champions
    from precast.model import registry

    champion = registry.by_alias(cfg, registry.CHAMPION)
    print(f"champion: {cfg.model.name} v{champion.version} (run {champion.run_id})"
          if champion else "champion: none yet")
    interrupted = champions.pending(cfg)
    for change in interrupted:
        print(f"interrupted champion change: v{change.model_version} ({change.decision} by "
              f"{change.decided_by}, {change.requested_at:%Y-%m-%d %H:%M} UTC); the next "
              "gate, promote or rollback completes it")
    problem = None if interrupted else champions.disagreement(cfg, champion)
    if problem:
        print(f"champion disagreement: {problem}")
    current = store.current(cfg.predictions_url)
    print(f"current snapshot: {_short(to_jsonable(current))}" if current
          else "current snapshot: none published")
    from precast.steps.extract import failed_days

    for bad, why in failed_days(cfg.lake):
        print(f"failed raw day {bad}: {why} (rerun: precast run extract --date {bad})")
    print_undelivered(cfg)
    for day, records in pipeline.last_records(cfg):
        print(f"last run {day}:")
        for rec in records:
            error = f"  {rec.get('error', '')}" if rec["status"] != "success" else ""
            print(f"  {rec['step']:<22} {rec['status']:<8} {rec.get('seconds', 0):6.1f}s{error}")


def print_undelivered(cfg: Config) -> None:
    """One line per alert target that has alerts it did not accept yet."""
    from precast.monitoring import alerts

    for row in alerts.undelivered(cfg):
        m = cfg.monitor
        print(f"undelivered alerts ({row['target']}): {row['alerts']}, up to {row['attempts']} "
              f"of {m.delivery_max_attempts} attempts; last error: {row['last_error']} "
              f"(retried whenever alerts are raised, for {m.delivery_max_age_days} days)")


def print_check(report: Any) -> None:
    """`precast check`: the sample's counts by reason with an example each, the columns of
    the clean events and of the SQL, then the problems (or that there are none)."""
    print(f"raw day {report.day} ({report.source}): {report.sampled:,} lines sampled, "
          f"{report.kept:,} kept, {report.sampled - report.kept:,} quarantined or duplicate")
    for reason, n in sorted(report.reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        line_number, line = report.examples[reason]
        print(f"  {reason:<32} {n:>7,}  e.g. line {line_number}: {line}")
    for title, columns in (("clean events", report.clean_columns),
                           ("feature SQL", report.feature_columns),
                           ("label SQL", report.label_columns)):
        if columns:
            print(f"{title}: " + ", ".join(f"{name} {kind}" for name, kind in columns))
    if report.problems:
        print(f"{len(report.problems)} problem(s):")
        for problem in report.problems:
            print(f"  {problem}")
    else:
        print("no problems: the mapping, the SQL and the config agree")
