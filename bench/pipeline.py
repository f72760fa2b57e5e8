"""Pipeline benchmark: precast's Spark extract and features steps against a DuckDB twin.

On generated churn worlds of 1x (the demo's 20,000 users x 60 days, about 1.49M raw lines)
and 10x, precast runs as a user runs it: `precast run extract` for the last day (the
lookback covers all 60, so every day is extracted in one Spark job), then `precast run
features` (train, test and inference: five snapshots), each a child process whose wall time
includes Python's and Spark's start. The DuckDB twin (bench/twin.py) does the same work in
a child process of its own, and both outputs are compared: per-day counts by reason, the
clean and quarantine rows, every dataset row. Also measured: the fixed cost (a 12-line day
through `precast run extract`), the cost per row beyond it at each scale, and the daily
predict chain for a new day on the largest world.

    python -m bench pipeline                 # 1x and 10x (BENCH_SCALES=1,10)
    python -m bench pipeline --scales 1      # 1x only
    python -m bench pipeline --quick         # 0.1x: 2,000 users

Worlds live under .precast/bench/pipeline/world-<users>x<days>/ (their PRECAST_HOME); the
raw logs are generated once and kept, everything extract and features write is wiped
before each measured run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from pathlib import Path

from bench import twin
from bench.common import (
    CHURN,
    ChildResult,
    ProcessResult,
    Row,
    Sizes,
    bench_home,
    count,
    goal_row,
    median,
    missing_row,
    rate,
    run_child,
    run_process,
    secs,
)
from precast.config import Config, load_config
from precast.lake import delete_dir, list_partitions, read_json

log = logging.getLogger(__name__)

FAMILY = "pipeline"
DUPLICATE = twin.DUPLICATE
PRECAST = str(Path(sys.executable).with_name("precast"))  # the venv's console script
TINY_LINES = 12
EXTRACT_AT_MOST = {10.0: 4.0}  # precast / twin wall time, by scale (others: reported)
FEATURES_AT_MOST = {1.0: 5.0, 10.0: 3.0}
DRIVER_GOAL_BYTES = 3 << 30
PER_ROW_BAND = (0.7, 1.3)  # per-row cost of a scale / of the smallest scale
FIXED_GOAL_S = 8.0
PREDICT_GOAL_S = 60.0
TIMEOUT_S = 4 * 3600
STEP_LINE = re.compile(r"^\s+(\w+)\s+([\d.]+)s\s", re.MULTILINE)  # console.print_step


# ---------------------------------------------------------------- worlds


@dataclass(frozen=True)
class World:
    """A generated churn world: its PRECAST_HOME, size and the config precast runs it with."""

    home: Path
    users: int
    days: int

    @cached_property
    def cfg(self) -> Config:
        return load_config(CHURN, environ={"PRECAST_HOME": str(self.home)})

    @property
    def run_date(self) -> date:
        return self.cfg.demo.start_date + timedelta(days=self.days - 1)

    @property
    def twin_out(self) -> str:
        return str(self.home / "twin")

    def env(self) -> dict[str, str]:
        """The environment of a precast child: this world's PRECAST_HOME."""
        return {**os.environ, "PRECAST_HOME": str(self.home)}

    @property
    def size(self) -> str:
        return f"{count(self.users)} users x {self.days} days"


def world(users: int, days: int) -> World:
    """The world of `users` x `days` with the demo's seed and start, generated once."""
    found = World(bench_home() / "pipeline" / f"world-{users}x{days}", users, days)
    planted = read_json(f"{found.cfg.lake.raw_events()}/_planted.json")  # written last
    if planted is None or len(planted.get("lines", {})) != days:
        log.info("pipeline: generating %s users x %s days under %s", users, days, found.home)
        precast(found, "demo-data", "--users", str(users), "--days", str(days))
    return found


def precast(where: World, *args: str) -> ProcessResult:
    """`precast --use-case examples/churn ARGS` in a child process on `where`'s home."""
    return run_process([PRECAST, "--use-case", str(CHURN.parent), *args], TIMEOUT_S,
                       env=where.env())


def wipe(where: World) -> None:
    """Remove everything extract, features and the twin wrote (the raw logs stay)."""
    lake = where.cfg.lake
    for path in (lake.events(), lake.quarantine(), f"{lake.root}/datasets", where.twin_out):
        delete_dir(path)


def raw_days(where: World) -> list[str]:
    """The world's raw day partitions up to its run date."""
    return [d for d in list_partitions(where.cfg.lake.raw_events(), "dt")
            if d <= where.run_date.isoformat()]


# ---------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Timed:
    """One contender's wall time and memory (the largest single process and the tree)."""

    wall_s: float
    largest_bytes: int
    tree_bytes: int

    @classmethod
    def of(cls, done: ProcessResult | ChildResult) -> Timed:
        if isinstance(done, ChildResult):
            return cls(done.wall_s, done.max_rss_bytes, done.tree_peak_bytes)
        return cls(done.wall_s, done.largest_peak_bytes, done.tree_peak_bytes)


@dataclass(frozen=True)
class Step:
    """One step measured on one world: precast, the twin, rows handled, parity problems."""

    name: str
    precast: Timed
    twin: Timed
    rows: int
    problems: tuple[str, ...]


def measure_extract(where: World) -> Step:
    """`precast run extract` on every raw day, then the twin; compare their outputs."""
    wipe(where)
    ran = precast(where, "run", "extract", "--date", where.run_date.isoformat())
    days = raw_days(where)
    payload = {"config": str(CHURN), "home": str(where.home), "days": days,
               "raw": where.cfg.lake.raw_events(), "out": where.twin_out}
    theirs = run_child("bench.twin", ["extract", json.dumps(payload)], TIMEOUT_S)
    cfg = where.cfg
    problems = twin.extract_parity(cfg.lake, cfg.events, where.twin_out, theirs.data["days"])
    lines = sum(d["read"] for d in theirs.data["days"].values())
    return Step("extract", Timed.of(ran), Timed.of(theirs), lines, tuple(problems))


def measure_features(where: World) -> Step:
    """`precast run features` over precast's clean events, then the twin; compare datasets."""
    delete_dir(f"{where.cfg.lake.root}/datasets")
    ran = precast(where, "run", "features", "--date", where.run_date.isoformat())
    out = f"{where.twin_out}/datasets"
    payload = {"config": str(CHURN), "home": str(where.home), "out": out,
               "run_date": where.run_date.isoformat()}
    theirs = run_child("bench.twin", ["features", json.dumps(payload)], TIMEOUT_S)
    problems = twin.features_parity(where.cfg, where.run_date, out)
    return Step("features", Timed.of(ran), Timed.of(theirs), int(theirs.data["events"]),
                tuple(problems))


@dataclass(frozen=True)
class Scale:
    """Both steps measured on the world of one scale, and how precast's quarantine compares
    with the bad lines the generator planted."""

    scale: float
    world: World
    extract: Step
    features: Step
    planted: tuple[str, ...]


def planted_misses(where: World) -> list[str]:
    """Days whose quarantine in precast's manifests differs, by kind, from the bad lines
    the generator planted (raw/events/_planted.json)."""
    planted = read_json(f"{where.cfg.lake.raw_events()}/_planted.json") or {}
    days = {d: kinds for d, kinds in planted.get("days", {}).items() if d in raw_days(where)}
    found = twin.precast_day_counts(where.cfg.lake, sorted(days))
    misses = []
    for day, kinds in days.items():
        got = Counter({DUPLICATE: found[day]["duplicates"] or 0})
        for reason, lines in found[day]["by_reason"].items():
            got[reason.split(":")[0]] += lines  # wrong_type:<field> is a wrong_type
        if +got != +Counter(kinds):
            misses.append(f"{day}: planted {dict(+Counter(kinds))}, quarantined {dict(+got)}")
    return misses


def measure_scale(scale: float) -> Scale:
    """Generate (once) the world of `scale` x the churn demo and measure both steps on it."""
    demo = load_config(CHURN).demo
    where = world(max(1, round(demo.users * scale)), demo.days)
    log.info("pipeline %gx (%s): extract", scale, where.size)
    extract = measure_extract(where)
    log.info("pipeline %gx (%s): features", scale, where.size)
    return Scale(scale, where, extract, measure_features(where), tuple(planted_misses(where)))


def tiny_world(source: World) -> World:
    """A world holding one day of TINY_LINES raw lines: the first lines of `source`'s first
    day, in the same format."""
    day = source.cfg.demo.start_date
    tiny = World(bench_home() / "pipeline" / f"tiny-{TINY_LINES}", TINY_LINES, 1)
    with open(f"{source.cfg.lake.raw_events(day)}/events.jsonl", encoding="utf-8") as raw:
        lines = [next(raw) for _ in range(TINY_LINES)]
    target = Path(tiny.cfg.lake.raw_events(day))
    target.mkdir(parents=True, exist_ok=True)
    (target / "events.jsonl").write_text("".join(lines), encoding="utf-8")
    return tiny


def measure_fixed_cost(source: World, repeats: int) -> tuple[float, Timed, Timed]:
    """(median wall, last precast run, twin run) of extracting a 12-line day."""
    tiny = tiny_world(source)
    runs = [_extract_afresh(tiny) for _ in range(max(1, repeats))]
    payload = {"config": str(CHURN), "home": str(tiny.home), "days": raw_days(tiny),
               "raw": tiny.cfg.lake.raw_events(), "out": tiny.twin_out}
    theirs = Timed.of(run_child("bench.twin", ["extract", json.dumps(payload)]))
    return median([r.wall_s for r in runs]), runs[-1], theirs


def _extract_afresh(where: World) -> Timed:
    """`precast run extract` of the world's last day, on a lake without its outputs."""
    wipe(where)
    return Timed.of(precast(where, "run", "extract", "--date", where.run_date.isoformat()))


# ---------------------------------------------------------------- the predict chain


def trained(where: World) -> None:
    """Run the training chain (extract ... gate) for the day before the world's last, once;
    a marker in the world's home says it is done."""
    marker = where.home / "trained.json"
    day = where.run_date - timedelta(days=1)
    if (read_json(str(marker)) or {}).get("run_date") == day.isoformat():
        return
    log.info("pipeline: training chain for %s on %s (untimed)", day, where.home)
    wipe(where)
    precast(where, "run", "training", "--date", day.isoformat())
    marker.write_text(json.dumps({"run_date": day.isoformat()}))


def wipe_day(where: World, day: date) -> None:
    """Remove what the predict chain writes for `day` (clean events to predictions)."""
    lake = where.cfg.lake
    for path in (lake.events(day), lake.quarantine(day), lake.dataset("inference", day),
                 lake.predictions(day), lake.prediction_errors(day)):
        delete_dir(path)


def measure_predict(users: int, days: int) -> tuple[ProcessResult, World, dict[str, float]]:
    """The daily chain for the last day of a `users` x `days + 1` world, trained on the
    days before it: `precast run daily` (extract, validate_events, then the predict chain,
    in one process), timed."""
    where = world(users, days + 1)
    trained(where)
    wipe_day(where, where.run_date)
    done = run_process([PRECAST, "--use-case", str(CHURN.parent), "run", "daily", "--date",
                        where.run_date.isoformat()], TIMEOUT_S, env=where.env())
    steps = {name: float(s) for name, s in STEP_LINE.findall(done.stdout)}
    return done, where, steps


# ---------------------------------------------------------------- the summary


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def step_rows(result: Scale, step: Step, at_most: dict[float, float]) -> list[Row]:
    """Wall time against the twin, parity and peak memory of one step at one scale."""
    label = f"{result.scale:g}x {step.name}:"
    p, t = step.precast, step.twin
    time_row = goal_row(
        FAMILY, f"{label} wall, precast / DuckDB twin", f"{secs(p.wall_s)} "
        f"({rate(step.rows, p.wall_s)})", f"{secs(t.wall_s)} ({rate(step.rows, t.wall_s)})",
        p.wall_s / t.wall_s, at_most=at_most.get(result.scale), precast_s=p.wall_s,
        twin_s=t.wall_s, rows=step.rows)
    parity = Row(FAMILY, f"{label} outputs vs the twin's", "identical" if not step.problems
                 else "MISMATCH: " + "; ".join(step.problems)[:300], goal="identical",
                 met=not step.problems, detail={"problems": list(step.problems)})
    memory = Row(FAMILY, f"{label} peak RSS, driver (tree)",
                 f"{mib(p.largest_bytes)} ({mib(p.tree_bytes)})", mib(t.largest_bytes),
                 goal=f"< {DRIVER_GOAL_BYTES / 2**30:g} GiB",
                 met=p.largest_bytes < DRIVER_GOAL_BYTES,
                 detail={"largest_bytes": p.largest_bytes, "tree_bytes": p.tree_bytes,
                         "twin_bytes": t.largest_bytes})
    return [time_row, parity, memory]


def per_row_rows(results: Sequence[Scale], fixed_s: float) -> list[Row]:
    """Per-row cost beyond the fixed cost, each scale against the smallest."""
    rows = []
    for name in ("extract", "features"):
        costs = [(r, (getattr(r, name).precast.wall_s - fixed_s) / getattr(r, name).rows)
                 for r in results]
        first = costs[0][1]
        for result, cost in costs:
            label = f"{result.scale:g}x {name}: per-row cost beyond the fixed cost"
            value = f"{cost * 1e6:.2f} us/row"
            if result is results[0]:
                rows.append(Row(FAMILY, label, value, detail={"cost_s": cost}))
                continue
            rows.append(goal_row(
                FAMILY, f"{label}, vs {results[0].scale:g}x", value, f"{first * 1e6:.2f} us/row",
                cost / first if first > 0 else None, at_least=PER_ROW_BAND[0],
                at_most=PER_ROW_BAND[1], cost_s=cost, fixed_s=fixed_s))
    return rows


def fixed_row(fixed_s: float, last: Timed, theirs: Timed, repeats: int) -> Row:
    """The fixed cost: a 12-line day through `precast run extract`, start to exit."""
    return Row(FAMILY, f"fixed cost: {TINY_LINES}-line day, `precast run extract` / twin",
               f"{secs(fixed_s)} (driver {mib(last.largest_bytes)})", secs(theirs.wall_s),
               ratio=fixed_s / theirs.wall_s, goal=f"<= {FIXED_GOAL_S:g} s",
               met=fixed_s <= FIXED_GOAL_S,
               detail={"precast_s": fixed_s, "twin_s": theirs.wall_s, "repeats": repeats})


def predict_row(scale: float, done: ProcessResult, where: World) -> Row:
    """The daily chain for one new day, start to exit."""
    return Row(FAMILY, f"{scale:g}x daily chain, day {where.days}: `precast run daily`",
               f"{secs(done.wall_s)} (driver {mib(done.largest_peak_bytes)})",
               goal=f"< {PREDICT_GOAL_S:g} s", met=done.wall_s < PREDICT_GOAL_S,
               detail={"wall_s": done.wall_s, "largest_bytes": done.largest_peak_bytes})


def _failure(what: str, exc: Exception, goal: str = "-") -> Row:
    log.exception("pipeline: %s failed", what)
    return missing_row(FAMILY, what, str(exc).splitlines()[0][:200], goal)


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """Every scale in `sizes.scales`, the fixed cost, per-row costs, the predict chain."""
    scales = sorted(sizes.scales)
    rows: list[Row] = []
    results: list[Scale] = []
    for scale in scales:
        try:
            results.append(measure_scale(scale))
        except Exception as exc:  # noqa: BLE001 - reported as unmeasured
            rows.append(_failure(f"{scale:g}x extract and features", exc))
            continue
        rows += step_rows(results[-1], results[-1].extract, EXTRACT_AT_MOST)
        rows += step_rows(results[-1], results[-1].features, FEATURES_AT_MOST)
    if results:
        fixed_s, last, theirs = measure_fixed_cost(results[0].world, sizes.repeats)
        rows.append(fixed_row(fixed_s, last, theirs, max(1, sizes.repeats)))
        rows += per_row_rows(results, fixed_s)
    out = notes(results)
    demo = load_config(CHURN).demo
    try:
        done, where, steps = measure_predict(max(1, round(demo.users * scales[-1])), demo.days)
        rows.append(predict_row(scales[-1], done, where))
        rows[-1].detail["steps_s"] = steps
        out.append(f"pipeline daily chain on {where.size}, trained on the first "
                   f"{where.days - 1}: steps (s, in process) " +
                   ", ".join(f"{name} {s:.1f}" for name, s in steps.items()))
    except Exception as exc:  # noqa: BLE001 - reported as unmeasured
        rows.append(_failure(f"{scales[-1]:g}x daily chain", exc, f"< {PREDICT_GOAL_S:g} s"))
    return rows, out


def notes(results: Sequence[Scale]) -> list[str]:
    """What the numbers mean, and the parity of each scale."""
    out = [f"pipeline {r.scale:g}x = {r.world.size}: extract "
           f"read {r.extract.rows:,} lines, features {r.features.rows:,} clean events; outputs "
           f"{'identical' if not (r.extract.problems or r.features.problems) else 'DIFFER'}; "
           "precast's quarantine " + ("holds exactly the bad lines the generator planted"
                                      if not r.planted else "DIFFERS from the planted bad lines: "
                                      + "; ".join(r.planted[:3]))
           for r in results]
    return out + [
        "pipeline: precast = the `precast` CLI in a child process (wall time from start to "
        "exit: Python, Spark's JVM and the step); twin = bench/twin.py, DuckDB with as many "
        f"threads as cores ({os.cpu_count()}) and the memory of Spark's driver, in a child "
        "process too; ratio = precast time / twin time; rows/s = raw lines (extract), clean "
        "events read (features)",
        "pipeline: peak RSS = the largest single process (Spark's driver JVM), and in "
        "brackets the sum over the process tree, sampled every 0.2 s (the sum counts twice "
        "the pages a child forked by the JVM shares with it); fixed cost = the median wall "
        "time of a 12-line day; per-row cost = (wall - fixed cost) / rows",
        "pipeline: outputs = per-day read/kept/quarantined-by-reason/duplicate counts from "
        "precast's manifests, the clean and quarantine rows, and every train/test/inference "
        "row (doubles within 1e-9 relative)",
    ]
