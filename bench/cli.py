"""The benchmark command line: pick families and sizes, run, print and save the summary.

    python -m bench                      # all families at full size (about 10+ minutes)
    python -m bench --quick              # 100k rows, 1M for the large publish, short lookups
    python -m bench publish --rows 200000
    python -m bench train                # training time by rows and device (make bench-train)
    python -m bench lookup-keys --quick  # the HTTP API with a key, limit and metering vs open
    python -m bench ui                   # the precast view's pages on 500 snapshots, 10k alerts
    python -m bench pipeline --scales 1  # Spark extract/features vs a DuckDB twin, 1x world
    BENCH_ROWS=100000 make bench         # sizes from the environment (BENCH_BIG_ROWS too)

Results: printed, and written to .precast/bench/results.{json,txt}.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime

from bench.common import Row, Sizes, machine, prepare, table_text, write_results

log = logging.getLogger("bench")

FAMILIES = ("publish", "score", "lookup", "pipeline")  # `all`; `train` only when named
OPTIONAL = ("train", "lookup-keys", "ui")
QUICK = Sizes(rows=100_000, big_rows=1_000_000, repeats=1, lookup_seconds=3.0,
              pgbench_seconds=3, scales=(0.1,))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("families", nargs="*",
                        metavar="{publish,score,lookup,pipeline,train,lookup-keys,ui,all}",
                        help="which benchmarks (default all: publish, score, lookup, pipeline)")
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--rows", type=int,
                        help="rows for publish/score/lookup/train (BENCH_ROWS; train "
                             "defaults to 100k, 1M and 5M)")
    parser.add_argument("--big-rows", type=int,
                        help="rows of the large publish (BENCH_BIG_ROWS; default 10x rows)")
    parser.add_argument("--repeats", type=int, help="repeats of the fast publish contenders")
    parser.add_argument("--seconds", type=float, help="seconds per lookup level")
    parser.add_argument("--scales", help="pipeline worlds as multiples of the churn demo "
                                         "(20,000 users x 60 days), e.g. 1,10 (BENCH_SCALES; "
                                         "quick: 0.1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is not met")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def sizes_from(args: argparse.Namespace, environ: dict[str, str]) -> Sizes:
    """Sizes from flags, then BENCH_* variables, then the quick or full defaults."""
    sizes = QUICK if args.quick or environ.get("BENCH_QUICK") in {"1", "true"} else Sizes()
    rows = args.rows or int(environ.get("BENCH_ROWS", 0)) or None
    big = args.big_rows or int(environ.get("BENCH_BIG_ROWS", 0)) or None
    if rows:
        sizes = replace(sizes, rows=rows, big_rows=big or 10 * rows)
    elif big:
        sizes = replace(sizes, big_rows=big)
    if args.repeats:
        sizes = replace(sizes, repeats=args.repeats)
    if args.seconds:
        sizes = replace(sizes, lookup_seconds=args.seconds,
                        pgbench_seconds=max(1, round(args.seconds)))
    scales = args.scales or environ.get("BENCH_SCALES")
    if scales:
        sizes = replace(sizes, scales=_scales(scales))
    if min(sizes.rows, sizes.big_rows) < 1000 or max(sizes.rows, sizes.big_rows) > 99_999_999:
        raise SystemExit("rows must be between 1000 and 99,999,999")
    return sizes


def _scales(text: str) -> tuple[float, ...]:
    """`1,10` → (1.0, 10.0): positive multiples of the churn demo's world."""
    try:
        scales = tuple(sorted({float(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise SystemExit(f"--scales takes numbers such as 1,10, not {text!r}") from None
    if not scales or min(scales) <= 0:
        raise SystemExit(f"--scales takes positive numbers such as 1,10, not {text!r}")
    return scales


def _family(name: str) -> Callable[[Sizes], tuple[list[Row], list[str]]]:
    """The `run(sizes)` of one family (imported late: each pulls in its own stack)."""
    if name == "publish":
        from bench import publish

        return publish.run
    if name == "score":
        from bench import score

        return score.run
    if name == "train":
        from bench import train

        return train.run
    if name == "pipeline":
        from bench import pipeline

        return pipeline.run
    if name == "ui":
        from bench import ui

        return ui.run
    if name == "lookup-keys":
        from bench import lookup as keyed

        return keyed.run_keys
    from bench import lookup

    return lookup.run


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen families one after another; print and save one summary table."""
    parser = _parser()
    args = parser.parse_args(argv)
    unknown = sorted(set(args.families) - {*FAMILIES, *OPTIONAL, "all"})
    if unknown:  # not argparse choices: Python 3.11 rejects an empty list against them
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join((*FAMILIES, *OPTIONAL))}, all")
    prepare()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    sizes = sizes_from(args, dict(os.environ))
    chosen = args.families or ["all"]
    families = FAMILIES if "all" in chosen else tuple(dict.fromkeys(chosen))
    started_at, before = datetime.now(UTC), machine()
    log.info("benchmarks %s with %s", ", ".join(families), sizes)
    rows: list[Row] = []
    notes: list[str] = []
    for name in families:
        began = time.perf_counter()
        log.info("%s: running", name)
        got, said = _family(name)(sizes)
        rows += got
        notes += said
        log.info("%s: done in %.0f s", name, time.perf_counter() - began)
    after = machine()
    goals = [r for r in rows if r.met is not None]
    met = sum(1 for r in goals if r.met)
    notes.append(f"goals met: {met} of {len(goals)}; load average before {before['load_avg']}, "
                 f"after {after['load_avg']} (the machine may be shared)")
    meta = {"started_at": started_at.isoformat(), "finished_at": datetime.now(UTC).isoformat(),
            "families": list(families), "sizes": asdict(sizes), "machine": after}
    path = write_results(rows, meta, notes)
    print(table_text(rows))
    print()
    print("\n".join(notes))
    print(f"\nwritten to {path} and {path.with_suffix('.json')}")
    return 1 if args.strict and met < len(goals) else 0
