"""Lookup benchmark: point lookups on a published snapshot, client and HTTP API vs raw baselines.

A snapshot of `sizes.rows` predictions is published with precast's publish step. Then, at 1,
4 and 16 concurrent client *processes* (spawned, each with its own connection), each contender
looks up uniformly random entity ids for a fixed time; every call's latency is recorded:

- client: `precast.serving.lookup.LookupClient(url).get_one(id)`;
- http: `GET /v1/predictions/{id}` on `precast serve` (a subprocess), one keep-alive
  connection per process (a minimal client, see KeepAliveClient);
- raw: psycopg 3, autocommit, `conn.execute(SQL, (id,), prepare=True)` on the same view;
- pgbench: `pgbench -S` (select-only, 1M accounts at scale 10) in its own database on the
  same server, at the same client counts (also `-M prepared` at 4 clients, for reference).

    python -m bench lookup             # or: python bench/run.py lookup
    python -m bench lookup-keys        # the HTTP API with a key, a rate limit and metering
                                       # vs without, call by call (run only when named)
"""

from __future__ import annotations

import http.client
import logging
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import (
    CHURN,
    PG_ADMIN_URL,
    REPO,
    Row,
    Sizes,
    bench_home,
    count,
    database,
    goal_row,
    ids_of,
    libpq_dsn,
    micros,
    missing_row,
    predictions_lake,
)

log = logging.getLogger(__name__)

FAMILY = "lookup"
LEVELS = (1, 4, 16)
RAW_SQL = ("SELECT entity_id, score, model_version, snapshot_id, scored_at "
           "FROM predictions_current WHERE entity_id = %s")
WARMUP_CALLS = 200
PGBENCH_SCALE = 10  # 1,000,000 pgbench_accounts rows
SERVE_START_S = 90


# ---------------------------------------------------------------- the contenders' calls


def _client_call(url: str, port: int) -> tuple[Any, Any]:
    """(call, close) for precast's Python client."""
    from precast.serving.lookup import LookupClient

    client = LookupClient(url)

    def call(entity_id: str) -> None:
        if not client.get_one(entity_id).found:
            raise LookupError(f"{entity_id} not found")

    return call, client.close


def _raw_call(url: str, port: int) -> tuple[Any, Any]:
    """(call, close) for a raw psycopg prepared statement in autocommit."""
    import psycopg

    conn = psycopg.connect(libpq_dsn(url), autocommit=True)

    def call(entity_id: str) -> None:
        if conn.execute(RAW_SQL, (entity_id,), prepare=True).fetchone() is None:
            raise LookupError(f"{entity_id} not found")

    return call, conn.close


class KeepAliveClient:
    """A minimal HTTP/1.1 keep-alive GET client: prebuilt request bytes, Content-Length framing.

    The load generators share the server's cores, so the client must cost little: pgbench's
    client is C, and `http.client` spends more CPU per request (header parsing into
    email.message objects) than the API itself. This one parses only the status line and
    Content-Length. A connection the server closed while idle is reopened once.
    """

    def __init__(self, port: int, headers: str = "") -> None:
        self.port = port
        self.headers = headers  # extra header lines, each ending in \r\n
        self.sock: socket.socket | None = None
        self.buffer = bytearray()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer.clear()
        return sock

    def get(self, path: str) -> tuple[int, bytes]:
        """(status, body) of GET `path`."""
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.headers}\r\n".encode()
        if self.sock is None:
            self.sock = self._connect()
        try:
            self.sock.sendall(request)
            return self._response()
        except (ConnectionError, BrokenPipeError):
            self.close()
            self.sock = self._connect()
            self.sock.sendall(request)
            return self._response()

    def _response(self) -> tuple[int, bytes]:
        assert self.sock is not None
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buffer[:end]).lower()
                at = head.find(b"\r\ncontent-length:")
                if at < 0:
                    raise ConnectionError(f"no Content-Length in {head[:200]!r}")
                size = int(head[at + 17:].split(b"\r\n", 1)[0])
                total = end + 4 + size
                if len(buffer) >= total:
                    status, body = int(head[9:12]), bytes(buffer[end + 4:total])
                    del buffer[:total]
                    return status, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("server closed the connection")
            buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _http_call(url: str, port: int, headers: str = "") -> tuple[Any, Any]:
    """(call, close) for the HTTP API over one keep-alive connection (KeepAliveClient)."""
    client = KeepAliveClient(port, headers)

    def call(entity_id: str) -> None:
        status, body = client.get(f"/v1/predictions/{entity_id}")
        if status != 200:
            raise LookupError(f"HTTP {status} for {entity_id}: {body[:200]!r}")

    return call, client.close


def _http_key_call(url: str, port: int) -> tuple[Any, Any]:
    """_http_call sending the benchmark's API key."""
    return _http_call(url, port, f"X-API-Key: {BENCH_KEY}\r\n")


CALLS = {"client": _client_call, "raw": _raw_call, "http": _http_call,
         "http_key": _http_key_call}
BENCH_KEY = "pk_bench_0123456789abcdef"
Ports = int | dict[str, int]  # one server for every kind, or a server per kind


def worker(kinds: list[str], url: str, port: Ports, rows: int, seed: int, seconds: float,
           barrier: Any, results: Any) -> None:
    """One client process: warm up, wait for the others, then call until the deadline.

    With several kinds it alternates them call by call on the same ids (a paired measurement:
    both sides see the same moments of a machine whose load drifts).
    """
    from precast.runtime import prepare_environment

    prepare_environment()
    try:
        calls = [CALLS[kind](url, port[kind] if isinstance(port, dict) else port)
                 for kind in kinds]
        keys = ids_of(np.random.default_rng(seed).integers(1, rows + 1, 200_000)).to_pylist()
        for key in keys[:WARMUP_CALLS]:
            for call, _ in calls:
                call(key)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        barrier.abort()
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    barrier.wait()
    latencies: list[list[int]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    deadline = clock() + int(seconds * 1e9)
    i, error = 0, None
    try:
        while clock() < deadline:
            key = keys[i % len(keys)]
            for (call, _), spent in zip(calls, latencies, strict=True):
                started = clock()
                call(key)
                spent.append(clock() - started)
            i += 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        error = f"{type(exc).__name__}: {exc}"
    for _, close in calls:
        close()
    results.put({"latencies": [np.asarray(v, np.int64).tobytes() for v in latencies],
                 "error": error})


@dataclass(frozen=True)
class Level:
    """One contender at one concurrency: throughput and latency percentiles (seconds)."""

    clients: int
    ops_per_s: float
    p50: float
    p99: float
    calls: int


def run_level(kinds: list[str], url: str, port: Ports, rows: int, clients: int,
              seconds: float) -> list[Level]:
    """`clients` processes calling `kinds` (alternating), started together, for `seconds`."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(kinds, url, port, rows, seed, seconds, barrier,
                                               results)) for seed in range(clients)]
    for proc in procs:
        proc.start()
    try:
        barrier.wait(timeout=180)
    except Exception:  # noqa: BLE001 - a worker failed to start; its error is queued
        pass
    outcomes = [results.get(timeout=seconds + 180) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    errors = [o["error"] for o in outcomes if o.get("error")]
    if errors:
        raise RuntimeError(f"{'+'.join(kinds)} at {clients} clients: {errors[0]}")
    levels = []
    for index in range(len(kinds)):
        lat = np.concatenate([np.frombuffer(o["latencies"][index], np.int64)
                              for o in outcomes]) / 1e9
        levels.append(Level(clients, len(lat) / seconds, float(np.percentile(lat, 50)),
                            float(np.percentile(lat, 99)), len(lat)))
    return levels


# ---------------------------------------------------------------- pgbench and the HTTP server


def _pg_args() -> list[str]:
    """pgbench's connection options for the benchmark server."""
    import sqlalchemy as sa

    admin = sa.make_url(PG_ADMIN_URL)
    return ["-h", admin.host or "127.0.0.1", "-p", str(admin.port or 5432),
            "-U", admin.username or "postgres"]


def pgbench_init(dbname: str) -> None:
    """`pgbench -i -s 10`: 1,000,000 accounts in `dbname`."""
    subprocess.run(["pgbench", *_pg_args(), "-i", "-q", "-s", str(PGBENCH_SCALE), dbname],
                   capture_output=True, check=True)


def pgbench(clients: int, seconds: int, dbname: str, prepared: bool = False) -> float:
    """tps of `pgbench -S` (select-only) at `clients` clients and as many threads."""
    cmd = ["pgbench", *_pg_args(), "-S", "-n", "-c", str(clients), "-j", str(clients),
           "-T", str(seconds), *(["-M", "prepared"] if prepared else []), dbname]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output: {out[-500:]}")
    return float(match.group(1))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(url: str, env_extra: dict[str, str] | None = None,
                 name: str = "serve") -> tuple[subprocess.Popen[bytes], int]:
    """`precast serve` on a free port, configured by environment (plus `env_extra`); waits
    for /healthz. Its log is <bench home>/<name>.log."""
    port = _free_port()
    env = {**os.environ, "PRECAST_CONFIG": str(CHURN), "PRECAST_STORES__PREDICTIONS_URL": url,
           "PRECAST_HOME": str(bench_home() / "home"), **(env_extra or {})}
    log_path = bench_home() / f"{name}.log"
    precast = os.path.join(os.path.dirname(sys.executable), "precast")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([precast, "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + SERVE_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise RuntimeError(f"precast serve exited {proc.returncode}: {' '.join(tail)}")
        if _healthy(port):
            return proc, port
        time.sleep(0.25)
    stop_server(proc)
    raise RuntimeError(f"precast serve not healthy after {SERVE_START_S} s (see {log_path})")


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's session (it may have workers), SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---------------------------------------------------------------- the family


def publish_snapshot(url: str, rows: int) -> str:
    """Publish `rows` generated predictions to `url` with precast's publish step; the URL of
    the use case's schema there, where they are served (what apps and the API read)."""
    from bench.common import SNAPSHOT_DATE
    from precast.steps import publish as publish_step

    cfg, _ = predictions_lake(rows)
    cfg = cfg.with_overrides({"stores.predictions_url": url})
    publish_step.run(cfg, SNAPSHOT_DATE)
    return cfg.predictions_url


@dataclass
class Measured:
    """Per contender: its levels, or why it could not be measured; pgbench likewise."""

    levels: dict[str, dict[int, Level] | str]
    tps: dict[int, float] | str
    prepared_tps: float | None = None
    paired: tuple[Level, Level] | str = "not measured"  # (raw, client), alternating calls


def measure(url: str, rows: int, sizes: Sizes, pgbench_db: str | None) -> Measured:
    """Level by level (1, 4, 16): raw, client, HTTP API, then pgbench at the same count.

    Interleaving keeps each ratio's two sides close in time on a machine whose load drifts.
    """
    got: dict[str, dict[int, Level] | str] = {"raw": {}, "client": {}, "http_key": {}}
    tps: dict[int, float] | str = {} if pgbench_db else "pgbench not on PATH"
    server, port = None, 0
    try:  # the API as production runs it: an API key, a rate limit, metering
        server, port = start_server(url, GUARDED_ENV)
    except Exception as exc:  # noqa: BLE001 - the HTTP rows say why
        got["http_key"] = str(exc).splitlines()[0][:200]
    try:
        for clients in LEVELS:
            for kind in got:
                _level(got, kind, url, port, rows, clients, sizes.lookup_seconds)
            if pgbench_db and isinstance(tps, dict):
                tps = _pgbench_level(tps, clients, sizes.pgbench_seconds, pgbench_db)
    finally:
        if server is not None:
            stop_server(server)
    prepared = None
    if pgbench_db and isinstance(tps, dict):
        prepared = pgbench(4, sizes.pgbench_seconds, pgbench_db, prepared=True)
    return Measured(got, tps, prepared, paired_latency(url, rows, sizes.lookup_seconds))


def paired_latency(url: str, rows: int, seconds: float) -> tuple[Level, Level] | str:
    """Single-client latency of raw psycopg and the client, call by call in one process."""
    try:
        raw, client = run_level(["raw", "client"], url, 0, rows, 1, seconds)
    except Exception as exc:  # noqa: BLE001 - reported as unmeasured
        log.exception("paired lookup latency failed")
        return str(exc).splitlines()[0][:200]
    log.info("paired: raw %s, client %s", raw, client)
    return raw, client


def _level(got: dict[str, dict[int, Level] | str], kind: str, url: str, port: int, rows: int,
           clients: int, seconds: float) -> None:
    """Measure one contender at one level into `got` (a failure replaces its levels)."""
    levels = got[kind]
    if isinstance(levels, str):
        return
    try:
        (levels[clients],) = run_level([kind], url, port, rows, clients, seconds)
        log.info("%s: %s", kind, levels[clients])
    except Exception as exc:  # noqa: BLE001 - reported as unmeasured
        log.exception("lookup %s failed", kind)
        got[kind] = str(exc).splitlines()[0][:200]


def _pgbench_level(tps: dict[int, float], clients: int, seconds: int,
                   dbname: str) -> dict[int, float] | str:
    """`tps` with pgbench -S at `clients` added, or the reason it failed."""
    try:
        tps[clients] = pgbench(clients, seconds, dbname)
        log.info("pgbench -S -c %s: %.0f tps", clients, tps[clients])
        return tps
    except (subprocess.CalledProcessError, RuntimeError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        return f"pgbench failed: {str(detail).strip()[:200]}"


def _tput(level: Level) -> str:
    return f"{level.ops_per_s:,.0f}/s"


def summary_rows(rows: int, got: Measured) -> list[Row]:
    """The goal rows (and reference rows) of the lookup family."""
    label = f"lookup ({count(rows)}-row snapshot)"
    raw, client, web = (got.levels.get(k) for k in ("raw", "client", "http_key"))
    out = latency_rows(label, got.paired)
    if isinstance(client, dict):
        out += _vs_pgbench(f"{label}: client throughput", client, got.tps, {4: 0.6})
    else:
        out.append(missing_row(FAMILY, f"{label}: client throughput", str(client), ">= 0.6x"))
    if isinstance(raw, dict):
        out += _vs_pgbench(f"{label}: raw psycopg throughput (reference)", raw, got.tps, {})
    if isinstance(web, str) or web is None:
        out.append(missing_row(FAMILY, f"{label}: HTTP API", str(web), "p99 < 5 ms"))
    else:
        for clients, level in web.items():
            goal = clients == 16
            out.append(Row(FAMILY, f"{label}: HTTP API (key, limit, metering) p50/p99, "
                               f"{clients} client(s)",
                           f"{micros(level.p50)} / {micros(level.p99)}",
                           goal="p99 < 5 ms" if goal else "-",
                           met=level.p99 < 5e-3 if goal else None))
        out += _vs_pgbench(f"{label}: HTTP API throughput", web, got.tps, {16: 0.2})
    return out


def latency_rows(label: str, paired: tuple[Level, Level] | str) -> list[Row]:
    """Client p50 against raw psycopg and client p99, from the paired single-client run."""
    if isinstance(paired, str):
        return [missing_row(FAMILY, f"{label}: client p50 vs raw psycopg", paired, "<= 1.3x"),
                missing_row(FAMILY, f"{label}: client p99, 1 client", paired, "< 300 us")]
    raw, client = paired
    return [
        goal_row(FAMILY, f"{label}: client p50, 1 client vs raw psycopg prepared (paired)",
                 micros(client.p50), micros(raw.p50), client.p50 / raw.p50, at_most=1.3,
                 calls=client.calls),
        Row(FAMILY, f"{label}: client p99, 1 client (paired)", micros(client.p99),
            micros(raw.p99), goal="< 300 us", met=client.p99 < 300e-6),
    ]


def _vs_pgbench(what: str, levels: dict[int, Level], tps: dict[int, float] | str,
                goals: dict[int, float]) -> list[Row]:
    """Throughput at each level against pgbench -S at the same client count."""
    out = []
    for clients, level in levels.items():
        measurement = f"{what}, {clients} proc vs pgbench -S -c {clients}"
        if isinstance(tps, str):
            out.append(Row(FAMILY, measurement, _tput(level), f"not measured: {tps}",
                           goal=f">= {goals[clients]:g}x" if clients in goals else "-",
                           met=False if clients in goals else None))
            continue
        out.append(goal_row(FAMILY, measurement, _tput(level), f"{tps[clients]:,.0f} tps",
                            level.ops_per_s / tps[clients], at_least=goals.get(clients),
                            p50_s=level.p50, p99_s=level.p99, calls=level.calls))
    return out


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """Publish the snapshot and set up pgbench, then measure every level of every contender."""
    import sqlalchemy as sa

    rows = sizes.rows
    have_pgbench = shutil.which("pgbench") is not None
    with database("lookup") as url, database("pgbench") as bench_url:
        url = publish_snapshot(url, rows)
        pgbench_db = str(sa.make_url(bench_url).database) if have_pgbench else None
        if pgbench_db:
            pgbench_init(pgbench_db)
        got = measure(url, rows, sizes, pgbench_db)
    notes = []
    if got.prepared_tps is not None:
        notes.append(f"lookup: pgbench -S -M prepared at 4 clients: {got.prepared_tps:,.0f} tps "
                     "(the goals use plain pgbench -S, as specified)")
    for kind, levels in got.levels.items():
        if isinstance(levels, dict):
            notes.append(f"lookup {kind}: " + "; ".join(
                f"{c} proc {_tput(lv)} p50 {micros(lv.p50)} p99 {micros(lv.p99)}"
                for c, lv in levels.items()))
    workers = os.environ.get("PRECAST_SERVE__WORKERS", "the configured (default 1)")
    notes.append("lookup: the client's p50/p99 come from one process alternating a raw "
                 "psycopg call and a client call on the same ids (paired), for "
                 f"{sizes.lookup_seconds:g} s")
    notes.append(f"lookup: each level runs {sizes.lookup_seconds:g} s after {WARMUP_CALLS} "
                 f"warm-up calls per process, levels interleaved with pgbench; clients are "
                 f"spawned processes on the same {os.cpu_count()} cores as the server "
                 f"({workers} uvicorn worker(s)) and PostgreSQL")
    return summary_rows(rows, got), notes


# ---------------------------------------------------------------- keys, limits and metering


KEYS_LEVELS = (1, 4)
# The guarded server: one API key, a rate limit it never reaches (the bucket is still
# updated on every call), metering flushed every second. The open one: none of the three.
GUARDED_ENV = {"PRECAST_API_KEYS": f"bench={BENCH_KEY}", "PRECAST_SERVE__RATE_LIMIT_PER_S":
               "1000000000", "PRECAST_SERVE__USAGE_FLUSH_S": "1"}
OPEN_ENV = {"PRECAST_SERVE__METERING": "false"}


def run_keys(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """The HTTP API with a key, a rate limit and metering against the open API, on the same
    snapshot: each client process alternates a call to each server on the same ids."""
    label = f"lookup ({count(sizes.rows)}-row snapshot): HTTP API with key + limit + metering"
    out: list[Row] = []
    notes: list[str] = []
    with database("lookup") as url:
        url = publish_snapshot(url, sizes.rows)
        servers = []
        try:
            servers.append(start_server(url, OPEN_ENV, "serve-open"))
            servers.append(start_server(url, GUARDED_ENV, "serve-guarded"))
            ports = {"http": servers[0][1], "http_key": servers[1][1]}
            for clients in KEYS_LEVELS:
                plain, guarded = run_level(["http", "http_key"], url, ports, sizes.rows,
                                           clients, sizes.lookup_seconds)
                out.append(goal_row(FAMILY, f"{label}, p50 at {clients} client(s) vs open",
                                    micros(guarded.p50), micros(plain.p50),
                                    guarded.p50 / plain.p50, at_most=1.1, calls=guarded.calls))
                out.append(Row(FAMILY, f"{label}, p99 at {clients} client(s)",
                               micros(guarded.p99), micros(plain.p99),
                               ratio=guarded.p99 / plain.p99))
                notes.append(f"lookup-keys {clients} proc: open p50 {micros(plain.p50)} "
                             f"p99 {micros(plain.p99)}; guarded p50 {micros(guarded.p50)} "
                             f"p99 {micros(guarded.p99)} ({guarded.calls} calls each)")
        finally:
            for proc, _ in servers:
                stop_server(proc)
    notes.append("lookup-keys: one process per client alternates a call to the open server "
                 "and one to the guarded server on the same ids (paired), "
                 f"{sizes.lookup_seconds:g} s per level")
    return out, notes
