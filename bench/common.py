"""Shared pieces of the benchmarks: sizes, databases, data, child processes, the summary table.

Every benchmark compares precast with a baseline measured in the same run, on the same data.
Nothing here runs in the test suite.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from precast import lake
from precast.config import Config, load_config
from precast.lake import Lake

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
CHURN = REPO / "examples" / "churn" / "precast.yaml"
PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DB_PREFIX = "precast_bench_"
SNAPSHOT_DATE = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
MODEL_NAME, MODEL_VERSION, DATA_VERSION = "bench_model", "1", "bench-data-v1"
FILE_ROWS = 1_000_000  # rows per Parquet file of generated predictions
ROW_GROUP = 131_072


@dataclass(frozen=True)
class Sizes:
    """How big each family runs; `--quick` and BENCH_ROWS shrink them."""

    rows: int = 1_000_000  # publish (small), scoring entities, lookup snapshot
    big_rows: int = 10_000_000  # publish (large) and its peak memory
    repeats: int = 3  # fast measurements (precast, floor) are repeated; the median counts
    lookup_seconds: float = 10.0  # per concurrency level (latencies come from the same runs)
    pgbench_seconds: int = 10
    # pipeline: worlds as multiples of the churn demo (20,000 users x 60 days); the predict
    # chain runs on the largest
    scales: tuple[float, ...] = (1.0, 10.0)


@dataclass
class Row:
    """One line of the summary table."""

    family: str
    measurement: str
    value: str
    baseline: str = "-"
    ratio: float | None = None
    goal: str = "-"
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def cells(self) -> list[str]:
        """The printed cells: measurement, value, baseline, ratio, goal, met."""
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}x"
        met = "-" if self.met is None else ("yes" if self.met else "NO")
        return [self.measurement, self.value, self.baseline, ratio, self.goal, met]


def goal_row(family: str, measurement: str, value: str, baseline: str, ratio: float | None,
             at_least: float | None = None, at_most: float | None = None,
             **detail: Any) -> Row:
    """A row whose goal is a ratio bound (`at_least` or `at_most` times the baseline)."""
    if ratio is None or (at_least is None and at_most is None):
        return Row(family, measurement, value, baseline, ratio, _goal_text(at_least, at_most),
                   None, detail)
    met = (at_least is None or ratio >= at_least) and (at_most is None or ratio <= at_most)
    return Row(family, measurement, value, baseline, ratio, _goal_text(at_least, at_most),
               met, detail)


def _goal_text(at_least: float | None, at_most: float | None) -> str:
    if at_least is not None and at_most is not None:
        return f"{at_least:g}x..{at_most:g}x"
    if at_least is not None:
        return f">= {at_least:g}x"
    return "-" if at_most is None else f"<= {at_most:g}x"


def missing_row(family: str, measurement: str, reason: str, goal: str = "-") -> Row:
    """A row for a measurement that could not be taken; a goal left unmeasured is not met."""
    return Row(family, measurement, f"not measured: {reason[:120]}", goal=goal,
               met=None if goal == "-" else False, detail={"missing": reason})


# ---------------------------------------------------------------- formatting


def secs(value: float) -> str:
    """Seconds with a sensible number of digits."""
    return f"{value:.2f} s" if value >= 1 else f"{value * 1000:.0f} ms"


def rate(rows: int, seconds: float) -> str:
    """Rows per second, humanised."""
    per = rows / seconds if seconds > 0 else float("inf")
    return f"{per / 1e6:.2f} M rows/s" if per >= 1e6 else f"{per / 1e3:.0f} k rows/s"


def micros(seconds: float) -> str:
    """A latency in microseconds (or milliseconds when large)."""
    return f"{seconds * 1e6:.0f} us" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def count(n: int) -> str:
    """1000000 -> 1M, 100000 -> 100k."""
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1000 and n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def median(values: Sequence[float]) -> float:
    """Median of repeated timings."""
    return float(statistics.median(values))


# ---------------------------------------------------------------- environment and config


def prepare() -> None:
    """Quiet, offline process environment for the benchmark and its children."""
    from precast.runtime import prepare_environment

    prepare_environment()


def bench_home() -> Path:
    """Where the benchmarks keep data and results (under the repo's .precast/)."""
    path = REPO / ".precast" / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def bench_config(**overrides: Any) -> Config:
    """Default config with PRECAST_HOME in .precast/bench/home and the given overrides."""
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(bench_home() / "home")})
    return cfg.with_overrides(overrides) if overrides else cfg


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil

    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "load_avg": [round(v, 2) for v in os.getloadavg()]}


# ---------------------------------------------------------------- PostgreSQL databases


def db_url(name: str) -> str:
    """SQLAlchemy URL of database `name` on the benchmark server."""
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def libpq_dsn(url: str) -> str:
    """A libpq connection string for a `postgresql+psycopg://` URL."""
    import sqlalchemy as sa

    parsed = sa.make_url(url)
    parts = {"host": parsed.host or "127.0.0.1", "port": parsed.port or 5432,
             "user": parsed.username or "postgres", "dbname": parsed.database}
    if parsed.password:
        parts["password"] = parsed.password
    if parsed.query.get("options"):  # e.g. the use case's search_path
        parts["options"] = "'" + str(parsed.query["options"]).replace("'", "\\'") + "'"
    return " ".join(f"{k}={v}" for k, v in parts.items())


def admin_execute(sql: str) -> None:
    """Run one statement in autocommit on the admin database."""
    import psycopg

    with psycopg.connect(libpq_dsn(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def database(tag: str) -> Iterator[str]:
    """A fresh database named precast_bench_<tag>_<random>, dropped afterwards; its URL."""
    name = f"{DB_PREFIX}{tag}_{uuid.uuid4().hex[:8]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield db_url(name)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkpoint() -> None:
    """Flush dirty buffers so one measurement does not pay for the previous one's writes."""
    admin_execute("CHECKPOINT")


# ---------------------------------------------------------------- generated data


def entity_ids(start: int, stop: int) -> pa.Array:
    """Entity ids of rows [start, stop): u00000001 ... (fixed width up to 99,999,999)."""
    return ids_of(np.arange(start + 1, stop + 1))


def ids_of(numbers: np.ndarray) -> pa.Array:
    """Entity ids for 1-based entity numbers (`u` + 8 digits)."""
    return pa.array(np.char.add("u", np.char.zfill(numbers.astype("U8"), 8)), pa.string())


def prediction_table(ids: pa.Array, scores: np.ndarray) -> pa.Table:
    """PREDICTIONS_SCHEMA rows for these ids and scores, with the benchmark's constants."""
    from precast.steps.score import PREDICTIONS_SCHEMA  # imports Beam: keep it out of children

    n = len(ids)
    return pa.table({
        "entity_id": ids, "score": pa.array(scores, pa.float64()),
        "snapshot_date": pa.repeat(pa.scalar(SNAPSHOT_DATE, pa.date32()), n),
        "model_name": pa.repeat(pa.scalar(MODEL_NAME, pa.string()), n),
        "model_version": pa.repeat(pa.scalar(MODEL_VERSION, pa.string()), n),
        "data_version": pa.repeat(pa.scalar(DATA_VERSION, pa.string()), n),
        "scored_at": pa.repeat(pa.scalar(SCORED_AT, pa.timestamp("us", tz="UTC")), n),
    }, schema=PREDICTIONS_SCHEMA)


def prediction_rows(start: int, stop: int, seed: int) -> pa.Table:
    """Rows [start, stop) of the predictions (PREDICTIONS_SCHEMA), deterministic in `seed`."""
    rng = np.random.default_rng([seed, start])
    return prediction_table(entity_ids(start, stop), rng.random(stop - start))


def predictions_lake(rows: int, seed: int = 7) -> tuple[Config, str]:
    """Config and path of a lake holding `rows` predictions for SNAPSHOT_DATE (made once)."""
    cfg = bench_config(**{"stores.lake": str(bench_home() / f"lake-predictions-{rows}")})
    path = Lake(cfg.lake_root).predictions(SNAPSHOT_DATE)
    manifest = lake.read_json(lake.manifest_path(path))
    if manifest is not None and manifest.get("row_count") == rows:
        return cfg, path
    lake.delete_dir(path)
    Path(path).mkdir(parents=True)
    for part, start in enumerate(range(0, rows, FILE_ROWS)):
        table = prediction_rows(start, min(rows, start + FILE_ROWS), seed)
        pq.write_table(table, f"{path}/part-{part:05d}.parquet", row_group_size=ROW_GROUP,
                       compression="snappy")
    lake.write_json(lake.manifest_path(path), {
        "row_count": rows, "errors": 0, "snapshot_date": SNAPSHOT_DATE,
        "model_name": MODEL_NAME, "model_version": MODEL_VERSION, "data_version": DATA_VERSION,
        "scored_at": SCORED_AT.isoformat(), "runner": "bench generator"})
    return cfg, path


# ---------------------------------------------------------------- child processes


@dataclass(frozen=True)
class ChildResult:
    """What a measured child reported; its ru_maxrss and the sampled peak of its whole tree."""

    data: dict[str, Any]
    max_rss_bytes: int  # the child's own peak (VmHWM; see peak_rss)
    tree_peak_bytes: int  # sum of RSS over the child and all its descendants, sampled
    wall_s: float


@dataclass(frozen=True)
class ProcessResult:
    """A measured command: its output, wall time and sampled memory peaks."""

    stdout: str
    stderr: str
    wall_s: float  # from start to exit: process start, imports and everything after
    own_peak_bytes: int  # the process's own ru_maxrss (Linux: may carry its parent's; see
    #                      peak_rss)
    tree_peak_bytes: int  # sum of RSS over the process and all its descendants, sampled
    largest_peak_bytes: int  # the largest single process of the tree (e.g. a JVM), sampled


class Watchdog(threading.Thread):
    """Samples a process tree's RSS; kills the tree past a memory limit or a deadline.

    On a shared machine a runaway contender must not take everyone's memory: the limit is
    what was available when the child started, less a margin (BENCH_MAX_GIB overrides).
    """

    def __init__(self, pid: int, limit_bytes: int, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.limit, self.deadline = pid, limit_bytes, time.monotonic() + timeout_s
        self.peak, self.largest, self.killed = 0, 0, ""
        self._done = threading.Event()

    def run(self) -> None:
        """Sample every 0.2 s until stopped."""
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.wait(0.2):
            try:
                tree = [root, *root.children(recursive=True)]
                sizes = [_rss(p) for p in tree]
            except psutil.NoSuchProcess:
                return
            total = sum(sizes)
            self.peak, self.largest = max(self.peak, total), max(self.largest, *sizes)
            if total > self.limit or time.monotonic() > self.deadline:
                self.killed = (f"process tree at {total / 2**20:,.0f} MiB, limit "
                               f"{self.limit / 2**20:,.0f} MiB" if total > self.limit
                               else "past its time limit")
                for proc in reversed(tree):  # descendants first, then the child itself
                    with contextlib.suppress(psutil.NoSuchProcess):
                        proc.kill()
                return

    def stop(self) -> None:
        """End sampling."""
        self._done.set()
        self.join()


def _rss(proc: Any) -> int:
    import psutil

    try:
        return int(proc.memory_info().rss)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0


def memory_limit() -> int:
    """Bytes a measured process tree may use: BENCH_MAX_GIB, else available less 1.5 GiB."""
    import psutil

    if os.environ.get("BENCH_MAX_GIB"):
        return int(float(os.environ["BENCH_MAX_GIB"]) * 2**30)
    return max(2 << 30, psutil.virtual_memory().available - (3 << 29))


def run_process(argv: Sequence[str], timeout_s: float = 3600,
                env: Mapping[str, str] | None = None) -> ProcessResult:
    """Run a command under a watchdog (memory and time limits); raise unless it exits 0."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=REPO, env=None if env is None else dict(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = Watchdog(proc.pid, memory_limit(), timeout_s)
    watchdog.start()
    stdout, stderr = _communicate(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    watchdog.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if watchdog.killed:
        raise RuntimeError(f"killed by the benchmark's watchdog: {watchdog.killed}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n"
                           f"{stderr.strip()[-3000:]}")
    own = usage.ru_maxrss * 1024
    return ProcessResult(stdout, stderr, wall, own, max(watchdog.peak, own),
                         max(watchdog.largest, own))


def run_child(module: str, args: Sequence[str], timeout_s: float = 3600) -> ChildResult:
    """Run `python -m <module> <args>` under a watchdog; its last stdout line is JSON."""
    done = run_process([sys.executable, "-m", module, *args], timeout_s)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    data = json.loads(lines[-1])
    own = int(data.pop("peak_rss_bytes", 0) or done.own_peak_bytes)
    return ChildResult(data, own, max(done.tree_peak_bytes, own), done.wall_s)


def _communicate(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Read both pipes to the end without reaping the child (wait4 does that)."""
    out: dict[str, str] = {}

    def drain(name: str, stream: Any) -> None:
        out[name] = stream.read()

    threads = [threading.Thread(target=drain, args=(n, s))
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out.get("out", ""), out.get("err", "")


def child_main(handlers: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Entry of a measured child: `python -m bench.X NAME JSON` prints the handler's JSON."""
    prepare()
    logging.basicConfig(level=logging.WARNING)
    name, payload = sys.argv[1], json.loads(sys.argv[2])
    result = handlers[name](payload)
    sys.stdout.write(json.dumps({**result, "peak_rss_bytes": peak_rss()}) + "\n")


def peak_rss() -> int | None:
    """This process's peak resident memory since exec (Linux VmHWM), or None.

    Not ru_maxrss: Linux carries the forking parent's high-water mark across exec into it,
    so a child of a big parent would report the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------- the summary


HEADERS = ["measurement", "value", "baseline", "ratio", "goal", "met"]


def table_text(rows: Sequence[Row]) -> str:
    """The summary as an aligned text table."""
    cells = [HEADERS] + [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(HEADERS))).rstrip()
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_results(rows: Sequence[Row], meta: dict[str, Any], notes: Sequence[str]) -> Path:
    """Write .precast/bench/results.{json,txt}; returns the text file's path."""
    home = bench_home()
    (home / "results.json").write_text(json.dumps(
        {**meta, "rows": [asdict(r) for r in rows], "notes": list(notes)}, indent=2,
        default=str))
    box = meta["machine"]
    text = "\n".join([f"precast benchmarks, {meta['finished_at']}, {box['host']}: {box['cpus']} "
                      f"CPUs, {box['memory_gib']} GiB, Python {box['python']}",
                      "", table_text(rows), "", *notes]) + "\n"
    path = home / "results.txt"
    path.write_text(text)
    return path
