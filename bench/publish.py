"""Publish benchmark: Parquet predictions -> a served, keyed, analysed PostgreSQL table.

Contenders, each on the same Parquet rows, each in a fresh database, each in its own child
process (so its peak resident memory is measured too), after a CHECKPOINT:

- precast: `precast.steps.publish.run(cfg, date)`, the production path (manifest check,
  metadata pass, binary COPY, primary key, ANALYZE, view swap, control-table record);
- floor (the ceiling): hand-written binary COPY of the three columns into a fresh heap table,
  encoded with numpy, then PRIMARY KEY, ANALYZE and RENAME, all in one transaction;
- pandas `DataFrame.to_sql` (default arguments) into the same table definition;
- Spark `DataFrame.write.jdbc` with batched inserts (`reWriteBatchedInserts=true`,
  batchsize 10000) into the same table definition.

Baselines get the same primary key + ANALYZE + rename after their load, so all reach the same
final state; both the load-only and the final-state times are reported. Each final table is
checked (row count, score sum, scored_at range, primary key, statistics) against the Parquet.

    python -m bench publish            # or: python bench/run.py publish
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from bench.common import (
    SNAPSHOT_DATE,
    Row,
    Sizes,
    bench_config,
    checkpoint,
    child_main,
    count,
    database,
    goal_row,
    libpq_dsn,
    median,
    missing_row,
    predictions_lake,
    rate,
    run_child,
    secs,
)

log = logging.getLogger(__name__)

FAMILY = "publish"
ROW_COLUMNS = ["entity_id", "score", "scored_at"]
JDBC_JAR = "/usr/share/java/postgresql.jar"
JDBC_BATCH = 10_000
TO_SQL_BYTES_PER_ROW = 1_200  # measured: to_sql of 1M rows peaked at about 1.05 GiB RSS
PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension
PGCOPY_TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970-01-01
STAGING, FINAL = "bench_load", "bench_served"
CREATE_SQL = (f"CREATE TABLE {STAGING} (entity_id text NOT NULL, score double precision NOT NULL,"
              " scored_at timestamptz NOT NULL)")
COPY_SQL = f"COPY {STAGING} (entity_id, score, scored_at) FROM STDIN (FORMAT binary)"
STATE_SQL = ("SELECT count(*), sum(score), (extract(epoch FROM min(scored_at)) * 1e6)::bigint, "
             "(extract(epoch FROM max(scored_at)) * 1e6)::bigint FROM {}")
FINISH_SQL = (f"ALTER TABLE {STAGING} ADD PRIMARY KEY (entity_id)", f"ANALYZE {STAGING}",
              f"ALTER TABLE {STAGING} RENAME TO {FINAL}")


# ---------------------------------------------------------------- the floor's encoder


def _record_dtype(width: int) -> np.dtype[Any]:
    """One binary COPY tuple of (text of `width` bytes, float8, timestamptz), packed."""
    fields: list[tuple[str, str]] = [("n", ">i2"), ("l1", ">i4")]
    fields += [("id", f"S{width}")] if width else []
    fields += [("l2", ">i4"), ("score", ">f8"), ("l3", ">i4"), ("ts", ">i8")]
    return np.dtype(fields)


def _fixed_width(ids: pa.StringArray, scores: np.ndarray, stamps: np.ndarray,
                 width: int) -> bytes:
    """Tuples for rows whose ids all have `width` bytes (one contiguous string buffer)."""
    n = len(ids)
    rec = np.empty(n, dtype=_record_dtype(width))
    rec["n"], rec["l1"], rec["l2"], rec["l3"] = 3, width, 8, 8
    if width:
        first = int(np.frombuffer(ids.buffers()[1], np.int32, 1, ids.offset * 4)[0])
        rec["id"] = np.frombuffer(ids.buffers()[2], f"S{width}", n, first)
    rec["score"] = scores
    rec["ts"] = stamps - PG_EPOCH_US
    return rec.tobytes()


def encode_binary(batch: pa.RecordBatch) -> bytes:
    """Binary COPY tuples (no header) for entity_id, score, scored_at; rows grouped by id width."""
    ids = batch.column("entity_id").cast(pa.string())
    scores = batch.column("score").cast(pa.float64()).to_numpy()
    stamps = batch.column("scored_at").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
    micros = stamps.to_numpy()
    widths = pc.binary_length(ids).to_numpy()
    unique = np.unique(widths)
    if len(unique) == 1:
        return _fixed_width(ids, scores, micros, int(unique[0]))
    parts = []
    for width in unique:
        index = np.flatnonzero(widths == width)
        parts.append(_fixed_width(ids.take(pa.array(index)), scores[index], micros[index],
                                  int(width)))
    return b"".join(parts)


# ---------------------------------------------------------------- children (one per measurement)


def index_memory() -> str | None:
    """The maintenance_work_mem precast builds its key with: every contender gets the same."""
    from precast import store

    policy = getattr(store, "WritePolicy", None)
    return getattr(policy(), "index_memory", None) if policy else None


def _finish_steps(conn: Any) -> dict[str, float]:
    """PRIMARY KEY (with precast's key-building memory), ANALYZE, RENAME; seconds of each."""
    memory = index_memory()
    if memory:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (memory,))
    phases: dict[str, float] = {}
    for name, sql in zip(("pk", "analyze", "rename"), FINISH_SQL, strict=True):
        started = time.perf_counter()
        conn.execute(sql)
        phases[name] = time.perf_counter() - started
    return phases


def _finish(conn: Any) -> dict[str, float]:
    """The finishing steps in a transaction of their own (after a baseline's load)."""
    with conn.transaction():
        return _finish_steps(conn)


def child_precast(payload: dict[str, Any]) -> dict[str, Any]:
    """precast's production publish step over the lake's predictions."""
    from precast.steps import publish as publish_step

    cfg = bench_config(**{"stores.lake": payload["lake"], "stores.schema": "public",
                          "stores.predictions_url": payload["url"]})  # beside the baselines
    started = time.perf_counter()
    result = publish_step.run(cfg, SNAPSHOT_DATE)
    return {"final_s": time.perf_counter() - started, "rows": result.rows,
            "table": result.table}


def child_floor(payload: dict[str, Any]) -> dict[str, Any]:
    """Binary COPY (numpy-encoded) + PRIMARY KEY + ANALYZE + RENAME, one transaction."""
    import psycopg

    dataset = pads.dataset(payload["path"], format="parquet")
    rows = 0
    with psycopg.connect(libpq_dsn(payload["url"])) as conn:
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(CREATE_SQL)
            with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
                copy.write(PGCOPY_HEADER)
                for batch in dataset.to_batches(columns=ROW_COLUMNS):
                    copy.write(encode_binary(batch))
                    rows += batch.num_rows
                copy.write(PGCOPY_TRAILER)
            loaded = time.perf_counter() - started
            phases = _finish_steps(conn)
        final = time.perf_counter() - started
    return {"load_s": loaded, "final_s": final, "phases": phases, "rows": rows, "table": FINAL}


def child_to_sql(payload: dict[str, Any]) -> dict[str, Any]:
    """pandas read_parquet + DataFrame.to_sql (defaults), then the same key/analyse/rename."""
    import pandas as pd
    import psycopg
    import sqlalchemy as sa

    engine = sa.create_engine(payload["url"])
    with psycopg.connect(libpq_dsn(payload["url"]), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(CREATE_SQL)
        frame = pd.read_parquet(payload["path"], columns=ROW_COLUMNS)
        frame.to_sql(STAGING, engine, index=False, if_exists="append")
        loaded = time.perf_counter() - started
        phases = _finish(conn)
        final = time.perf_counter() - started
    engine.dispose()
    return {"load_s": loaded, "final_s": final, "phases": phases, "rows": len(frame),
            "table": FINAL}


def child_spark(payload: dict[str, Any]) -> dict[str, Any]:
    """Spark read.parquet + write.jdbc (batched inserts), then the same key/analyse/rename."""
    import psycopg
    import sqlalchemy as sa

    from precast.engines.spark import spark_session

    cores = os.cpu_count() or 2
    base = bench_config()
    conf = {**base.engines.spark.conf, "spark.jars": JDBC_JAR,
            "spark.sql.files.maxPartitionBytes": str(payload["partition_bytes"]),
            "spark.driver.extraJavaOptions": "-Duser.timezone=UTC"}
    spark = spark_session(base.with_overrides({"engines.spark.master": f"local[{cores}]",
                                               "engines.spark.conf": conf}))
    parsed = sa.make_url(payload["url"])
    jdbc = (f"jdbc:postgresql://{parsed.host}:{parsed.port or 5432}/{parsed.database}"
            "?reWriteBatchedInserts=true")
    props = {"user": parsed.username or "postgres", "password": parsed.password or "",
             "driver": "org.postgresql.Driver", "batchsize": str(JDBC_BATCH)}
    with psycopg.connect(libpq_dsn(payload["url"]), autocommit=True) as conn:
        conn.execute(CREATE_SQL.replace(STAGING, "bench_warmup"))  # JDBC classes, connections
        spark.read.parquet(payload["path"]).select(*ROW_COLUMNS).limit(1000).write.jdbc(
            jdbc, "bench_warmup", mode="append", properties=props)
        conn.execute("DROP TABLE bench_warmup")
        started = time.perf_counter()
        conn.execute(CREATE_SQL)
        frame = spark.read.parquet(payload["path"]).select(*ROW_COLUMNS)
        partitions = frame.rdd.getNumPartitions()
        frame.write.jdbc(jdbc, STAGING, mode="append", properties=props)
        loaded = time.perf_counter() - started
        phases = _finish(conn)
        final = time.perf_counter() - started
    spark.stop()
    return {"load_s": loaded, "final_s": final, "phases": phases, "table": FINAL,
            "partitions": partitions}


CHILDREN = {"precast": child_precast, "floor": child_floor, "to_sql": child_to_sql,
            "spark": child_spark}


# ---------------------------------------------------------------- checking the final state


@dataclass(frozen=True)
class Expected:
    """What every contender's served table must hold."""

    rows: int
    score_sum: float
    min_ts: int
    max_ts: int


def expected_state(path: str) -> Expected:
    """Row count, score sum and scored_at range of the Parquet predictions."""
    dataset = pads.dataset(path, format="parquet")
    table = dataset.to_table(columns=["score", "scored_at"])
    stamps = table.column("scored_at").cast(pa.int64())
    return Expected(table.num_rows, float(pc.sum(table.column("score")).as_py()),
                    int(pc.min(stamps).as_py()), int(pc.max(stamps).as_py()))


def check_state(url: str, relation: str, table: str, want: Expected) -> list[str]:
    """Problems with the served relation and its table (empty when the state is right)."""
    import psycopg

    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        n, total, low, high = _one(conn, STATE_SQL.format(relation))
        (keyed,) = _one(conn, "SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass "
                        "AND indisprimary", table)
        (stats,) = _one(conn, "SELECT count(*) FROM pg_stats WHERE tablename = %s", table)
    problems = []
    if n != want.rows:
        problems.append(f"{n} rows, expected {want.rows}")
    if total is None or abs(total - want.score_sum) > 1e-6 * max(1.0, abs(want.score_sum)):
        problems.append(f"score sum {total}, expected {want.score_sum}")
    if (low, high) != (want.min_ts, want.max_ts):
        problems.append(f"scored_at range {low}..{high}, expected {want.min_ts}..{want.max_ts}")
    if keyed != 1:
        problems.append("no primary key")
    if stats == 0:
        problems.append("not analysed")
    return problems


# ---------------------------------------------------------------- measuring one size


def _one(conn: Any, sql: str, *params: Any) -> tuple[Any, ...]:
    """The single row of a query."""
    row = conn.execute(sql, params or None).fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class Outcome:
    """One contender at one size: times (medians when repeated), memory, state problems."""

    load_s: float | None
    final_s: float
    max_rss: int
    tree_peak: int
    problems: list[str]
    runs: list[dict[str, Any]]


def measure(contender: str, payload: dict[str, Any], want: Expected, repeats: int) -> Outcome:
    """Run one contender `repeats` times, each in a fresh database after a CHECKPOINT."""
    runs, problems, rss, tree = [], [], [], []
    for _ in range(repeats):
        with database(f"pub_{contender}") as url:
            checkpoint()
            child = run_child("bench.publish", [contender, _json({**payload, "url": url})])
            relation = "predictions_current" if contender == "precast" else FINAL
            problems += check_state(url, relation, child.data["table"], want)
        runs.append(child.data)
        rss.append(child.max_rss_bytes)
        tree.append(child.tree_peak_bytes)
        log.info("%s: %s", contender, child.data)
    loads = [r["load_s"] for r in runs if "load_s" in r]
    return Outcome(median(loads) if loads else None, median([r["final_s"] for r in runs]),
                   max(rss), max(tree), sorted(set(problems)), runs)


def _json(payload: dict[str, Any]) -> str:
    import json

    return json.dumps(payload)


def _short_of_memory(contender: str, rows: int) -> str | None:
    """Why to_sql cannot run here at this size (it holds every row as Python objects)."""
    import psutil

    if contender != "to_sql":
        return None
    need, free = TO_SQL_BYTES_PER_ROW * rows + (2 << 30), psutil.virtual_memory().available
    if need <= free:
        return None
    return (f"to_sql needs about {need / 2**30:.0f} GiB at {count(rows)} rows, "
            f"{free / 2**30:.0f} GiB available")


def _partition_bytes(path: str) -> int:
    """Spark split size giving about two partitions per core (parallel JDBC writers)."""
    total = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
                if f.endswith(".parquet"))
    return max(1 << 20, total // (2 * (os.cpu_count() or 2)))


def measure_size(rows: int, sizes: Sizes, memory_goal: bool) -> tuple[list[Row], list[str]]:
    """All contenders on `rows` predictions; the summary rows and notes for this size."""
    cfg, path = predictions_lake(rows)
    want = expected_state(path)
    payload = {"lake": cfg.stores.lake, "path": path, "partition_bytes": _partition_bytes(path)}
    outcomes: dict[str, Outcome | str] = {}
    plan = [("precast", sizes.repeats), ("floor", sizes.repeats), ("to_sql", 1), ("spark", 1)]
    for contender, repeats in plan:
        if contender == "spark" and not os.path.exists(JDBC_JAR):
            outcomes[contender] = f"{JDBC_JAR} missing (make bench-prereqs)"
            continue
        short = _short_of_memory(contender, rows)
        if short:
            outcomes[contender] = short
            continue
        try:
            outcomes[contender] = measure(contender, payload, want, repeats)
        except Exception as exc:  # noqa: BLE001 - a failed contender is reported, not fatal
            log.exception("publish %s at %s rows failed", contender, rows)
            outcomes[contender] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return summary_rows(rows, outcomes, memory_goal), size_notes(rows, outcomes)


def size_notes(rows: int, outcomes: dict[str, Outcome | str]) -> list[str]:
    """Where the time went, per contender (medians), and each one's peak memory."""
    notes = []
    for name, outcome in outcomes.items():
        if isinstance(outcome, str):
            notes.append(f"publish {count(rows)} {name}: not measured ({outcome})")
            continue
        text = f"publish {count(rows)} {name}: final {secs(outcome.final_s)}"
        if outcome.load_s is not None:
            text += f", load {secs(outcome.load_s)}"
        phases = outcome.runs[0].get("phases")
        if phases:
            text += ", then " + ", ".join(
                f"{k} {secs(median([r['phases'][k] for r in outcome.runs]))}" for k in phases)
        if "partitions" in outcome.runs[0]:
            text += f", {outcome.runs[0]['partitions']} Spark partitions"
        text += (f"; peak RSS {outcome.max_rss / 2**20:.0f} MiB (process), "
                 f"{outcome.tree_peak / 2**20:.0f} MiB (process tree, sampled)")
        text += f"; runs: {', '.join(secs(r['final_s']) for r in outcome.runs)}"
        notes.append(text)
    return notes


def summary_rows(rows: int, outcomes: dict[str, Outcome | str], memory_goal: bool) -> list[Row]:
    """Ratio rows of precast against each baseline, and precast's peak memory."""
    label = f"publish {count(rows)} rows"
    ours = outcomes["precast"]
    if isinstance(ours, str):
        return [missing_row(FAMILY, f"{label}: precast", ours, ">= 0.8x floor")]
    value = f"{secs(ours.final_s)} ({rate(rows, ours.final_s)})"
    if ours.problems:
        value += f" WRONG STATE: {'; '.join(ours.problems)}"
    out = []
    goals = [("floor", "binary COPY+PK+ANALYZE+rename", 0.8),
             ("to_sql", "pandas to_sql +PK+ANALYZE+rename", 10.0),
             ("spark", "Spark JDBC batched +PK+ANALYZE+rename", 1.0)]
    for name, what, at_least in goals:
        theirs = outcomes.get(name)
        measurement = f"{label}: precast vs {what}"
        if theirs is None or isinstance(theirs, str):
            out.append(missing_row(FAMILY, measurement, theirs or "not run", f">= {at_least:g}x"))
            continue
        base = secs(theirs.final_s) + ("" if theirs.load_s is None
                                       else f" (load {secs(theirs.load_s)})")
        if theirs.problems:
            base += f" WRONG STATE: {'; '.join(theirs.problems)}"
        row = goal_row(FAMILY, measurement, value, base, theirs.final_s / ours.final_s,
                       at_least=at_least, precast_runs=ours.runs, baseline_runs=theirs.runs,
                       baseline_max_rss=theirs.max_rss)
        if ours.problems or theirs.problems:
            row.met = False
        out.append(row)
    rss_mib = ours.max_rss / 2**20
    if memory_goal:
        out.append(Row(FAMILY, f"{label}: precast peak RSS (child process)", f"{rss_mib:.0f} MiB",
                       goal="< 1024 MiB", met=rss_mib < 1024, detail={"bytes": ours.max_rss}))
    else:
        out.append(Row(FAMILY, f"{label}: precast peak RSS (child process)",
                       f"{rss_mib:.0f} MiB", detail={"bytes": ours.max_rss}))
    return out


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """The publish family at both sizes (the large one carries the memory goal)."""
    rows, notes = measure_size(sizes.rows, sizes, memory_goal=sizes.rows == sizes.big_rows)
    if sizes.big_rows != sizes.rows:
        big_rows, big_notes = measure_size(sizes.big_rows, sizes, memory_goal=True)
        rows, notes = rows + big_rows, notes + big_notes
    notes.append("publish: every contender reads the same Parquet files, runs in its own child "
                 "process on a fresh database after a CHECKPOINT; the floor is numpy-encoded "
                 "binary COPY + PRIMARY KEY + ANALYZE + RENAME in one transaction; to_sql and "
                 "Spark get the same key, ANALYZE and rename after their load; every key is "
                 f"built with precast's maintenance_work_mem ({index_memory() or 'default'}); "
                 "ratio = baseline time / precast time (throughput ratio)")
    return rows, notes


if __name__ == "__main__":
    child_main(CHILDREN)
