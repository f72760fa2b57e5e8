"""The DuckDB twin of precast's extract and features steps: a yardstick, not product code.

The pipeline benchmark (bench/pipeline.py) runs it beside precast's Spark steps on the same
world, with as many threads as Spark's local[*] and the memory of Spark's driver (DuckDB
spills beyond it, as Spark does), and checks that both give the same answer:

- extract: the raw day files are read as text (a line is what Spark's text reader calls a
  line: split at LF, CRLF or CR, numbered from 1 in its file), parsed with DuckDB's JSON
  functions and given the first reason that fits, in the order of precast.data.raw_events'
  table (`malformed_json`, `wrong_type:<field>`, `missing_field:<field>`,
  `invalid_utf8:<field>`, `unknown_event_type`, `ts_outside_partition`,
  `invalid_value:<column>`); good lines that repeat an event id of the same day after its
  first line are `duplicate_event_id`. Clean events and quarantine are written as Parquet
  partitioned by dt.
- features: the use case's own feature and label SQL, translated mechanically from Spark's
  dialect (named binds become DuckDB's `$name`; `date_sub`, `date_add` and `datediff`,
  whose DuckDB namesakes mean other things, become macros), for every snapshot of
  precast's plan, over precast's clean events up to each snapshot's end.

Where DuckDB cannot see what Spark sees, the twin does not pretend: a file that is not
UTF-8 fails it (read_text); an escaped lone surrogate, or text after the object on the
same line, is malformed JSON to DuckDB (Spark reads the surrogate as `?` and ignores what
follows the object); a repeated key keeps its first value (Spark: the last); a whole
number beyond a long is not told apart; and mappings with a derived event id, nested
objects or epoch times are refused. The generated worlds have none of these; parity is
checked on every run.

    python -m bench.twin extract|features JSON   # a measured child (see bench/pipeline.py)
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from bench.common import bench_home, child_main
from precast.config import EVENT_ID, EVENT_TIME, Config, EventsConfig, load_config
from precast.data import raw_events
from precast.lake import Lake, manifest_path, read_json

DUPLICATE = "duplicate_event_id"  # precast.steps.extract.DUPLICATE (a step is not imported)
ISO_PATTERN = raw_events.ISO_PATTERN  # RE2 reads it as Java does (no look-around in it)
# What Spark's cast accepts beyond the pattern and DuckDB's does not check: hours to 23,
# minutes and seconds to 59, offsets within +-18:00.
SPARK_TIME_RANGES = (r"^.{10}T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
                     r"(Z|[+-]((0\d|1[0-7]):?[0-5]\d|18:?00))$")
NUMBERS = {"double": ("UBIGINT", "BIGINT", "DOUBLE"), "long": ("UBIGINT", "BIGINT"),
           "boolean": ("BOOLEAN",)}
# Text Spark's JSON reader accepts for a double (allowNonNumericNumbers, its default).
SPARK_DOUBLE_WORDS = {"NaN": "nan", "Infinity": "inf", "+Infinity": "inf", "+INF": "inf",
                      "-Infinity": "-inf", "-INF": "-inf"}
DRIVER_MEMORY = "2g"  # precast's default spark.driver.memory; the twin gets the same

DUCK_TYPES = {"string": "VARCHAR", "double": "DOUBLE", "long": "BIGINT", "boolean": "BOOLEAN"}
# Spark functions whose DuckDB namesakes differ, and the macros that stand in for them.
SPARK_MACROS = {  # name: (arguments, body)
    "date_sub": ("d, n", "CAST(d AS DATE) - CAST(n AS INTEGER)"),
    "date_add": ("d, n", "CAST(d AS DATE) + CAST(n AS INTEGER)"),
    "datediff": ("e, s", "CAST(e AS DATE) - CAST(s AS DATE)"),
}


def quote(text: str) -> str:
    """A SQL string literal (the twin compiles the config's names and values into SQL)."""
    return "'" + text.replace("'", "''") + "'"


def connect(memory: str = DRIVER_MEMORY) -> Any:
    """A DuckDB connection with as many threads as Spark's local[*] has cores, in UTC, the
    memory of Spark's driver (`spark.driver.memory`, e.g. `2g`), spilling under
    .precast/bench (not the working directory)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {os.cpu_count() or 1}")
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET memory_limit = $limit", {"limit": duckdb_memory(memory)})
    con.execute("SET temp_directory = $path", {"path": str(bench_home() / "duckdb-tmp")})
    return con


def duckdb_memory(spark_memory: str) -> str:
    """Spark's memory notation (`2g`, `512m`) in DuckDB's (`2GiB`, `512MiB`)."""
    found = re.fullmatch(r"\s*(\d+)\s*([kmgt])b?\s*", spark_memory.lower())
    if not found:
        raise ValueError(f"not a Spark memory size: {spark_memory!r}")
    return f"{found[1]}{found[2].upper()}iB"


def driver_memory(cfg: Config) -> str:
    """The memory precast gives Spark's driver under this config."""
    return cfg.engines.spark.conf.get("spark.driver.memory", DRIVER_MEMORY)


def use_case(config: str, home: str) -> Config:
    """The use case's config as precast reads it with PRECAST_HOME = `home`."""
    return load_config(config, environ={"PRECAST_HOME": home})


# ---------------------------------------------------------------- extract: the rules as SQL


def _supported(events: EventsConfig) -> None:
    """Refuse mappings the twin does not mirror (see the module docstring)."""
    if events.id is None or events.objects or events.time.format != "iso8601":
        raise NotImplementedError("the DuckDB twin mirrors mappings with an id field, no "
                                  "nested objects and ISO-8601 times (the churn example's)")


def json_path(path: str) -> str:
    """`a.b` → `$."a"."b"` (DuckDB's JSON path, any character but `.` in a name)."""
    return "$." + ".".join('"' + part.replace('"', '\\"') + '"' for part in path.split("."))


def _typed_paths(events: EventsConfig) -> list[str]:
    """The paths whose JSON types are read per line: every parent, then every leaf."""
    return [*raw_events.parents(events), *(leaf.path for leaf in raw_events.leaves(events))]


def typed_sql(events: EventsConfig) -> str:
    """Per line: the JSON value (null when not JSON), its top type, the types of every
    parent and leaf, and every leaf as text (Spark reads any token into a text field)."""
    types = ", ".join(quote(json_path(path)) for path in _typed_paths(events))
    texts = ", ".join(quote(json_path(leaf.path)) for leaf in raw_events.leaves(events))
    return (f"SELECT dt, line_number, value, json_type(j) AS top, json_type(j, [{types}]) "
            f"AS types, json_extract_string(j, [{texts}]) AS texts "
            "FROM (SELECT *, TRY_CAST(value AS JSON) AS j FROM lines)")


def _type_of(events: EventsConfig, path: str) -> str:
    """The SQL for the JSON type of the line's value at `path` (null when absent)."""
    return f"types[{_typed_paths(events).index(path) + 1}]"


def _text_of(events: EventsConfig, leaf: raw_events.Leaf) -> str:
    return f"texts[{raw_events.leaves(events).index(leaf) + 1}]"


def _present(kind: str) -> str:
    return f"coalesce({kind} <> 'NULL', false)"


def _parsed(events: EventsConfig, leaf: raw_events.Leaf) -> str:
    """The SQL for the value Spark's reader gives a leaf (null where it gives null): any
    token's text for a text field, the number or boolean for the others."""
    text, kind = _text_of(events, leaf), _type_of(events, leaf.path)
    if leaf.type == "string":
        return text
    accepted = ", ".join(quote(t) for t in NUMBERS[leaf.type])
    words = ""
    if leaf.type == "double":
        words = " ".join(f"WHEN {kind} = 'VARCHAR' AND {text} = {quote(w)} THEN "
                         f"CAST({quote(v)} AS DOUBLE)" for w, v in SPARK_DOUBLE_WORDS.items())
    return (f"CASE WHEN {kind} IN ({accepted}) THEN TRY_CAST({text} AS "
            f"{DUCK_TYPES[leaf.type]}) {words} END")


def _read(events: EventsConfig, leaf: raw_events.Leaf) -> str:
    """The parsed value in the checks (a column of `valued`, or the text)."""
    return _text_of(events, leaf) if leaf.type == "string" else leaf.column


def _value(events: EventsConfig, leaf: raw_events.Leaf) -> str:
    """The SQL for a leaf's clean value: the parsed value, the time as a UTC timestamp."""
    if leaf.column != EVENT_TIME:
        return _parsed(events, leaf)
    text = _text_of(events, leaf)
    return (f"CASE WHEN regexp_full_match({text}, {quote(ISO_PATTERN)}) AND "
            f"regexp_full_match({text}, {quote(SPARK_TIME_RANGES)}) "
            f"THEN TRY_CAST({text} AS TIMESTAMPTZ) END")


def _wrong_json_type(events: EventsConfig, leaf: raw_events.Leaf) -> str:
    """True where the value is present and of a JSON type the declared type does not take."""
    kind = _type_of(events, leaf.path)
    if leaf.type == "string":
        return f"coalesce({kind} IN ('OBJECT', 'ARRAY'), false)"
    accepted = ", ".join(quote(t) for t in NUMBERS[leaf.type])
    return f"({_present(kind)} AND {kind} NOT IN ({accepted}))"


def _first_wrong_type(events: EventsConfig) -> str:
    """For a line Spark's reader could not read: `wrong_type:<the first field at fault>`."""
    parents, leaves = raw_events.parents(events), raw_events.leaves(events)
    whens = [f"WHEN {_present(_type_of(events, p))} AND {_type_of(events, p)} <> 'OBJECT' "
             f"THEN {quote(f'{raw_events.WRONG_TYPE}:{p}')}" for p in parents]
    whens += [f"WHEN {_wrong_json_type(events, leaf)} "
              f"THEN {quote(f'{raw_events.WRONG_TYPE}:{leaf.path}')}" for leaf in leaves]
    return f"CASE {' '.join(whens)} ELSE {quote(raw_events.WRONG_TYPE)} END"


def _corrupt(events: EventsConfig) -> str:
    """True where Spark's reader fails on the line: a parent that is not an object, or a
    value its declared type cannot be read from."""
    parents, leaves = raw_events.parents(events), raw_events.leaves(events)
    tests = [f"({_present(_type_of(events, p))} AND {_type_of(events, p)} <> 'OBJECT')"
             for p in parents]
    tests += [f"({_present(_type_of(events, leaf.path))} AND {leaf.column} IS NULL)"
              for leaf in leaves if leaf.type != "string"]  # a text field reads any token
    return " OR ".join(tests) or "false"


def _required(events: EventsConfig) -> list[tuple[raw_events.Leaf, str | None]]:
    """(leaf, the lines it is required on, or None for every line) for each required value."""
    must: dict[str, str | None] = dict.fromkeys(
        [EVENT_ID, events.key.column, EVENT_TIME,
         *([events.kind.column] if events.kind else [])])
    for name, attribute in events.attributes.items():
        if isinstance(attribute.required, tuple) and events.kind:
            kinds = ", ".join(quote(k) for k in attribute.required)
            must[name] = f"coalesce({events.kind.column} IN ({kinds}), false)"
        elif attribute.required:
            must[name] = None
    return [(leaf, must[leaf.column]) for leaf in raw_events.leaves(events)
            if leaf.column in must]


def _invalid(events: EventsConfig) -> list[tuple[str, str]]:
    """(attribute, test) for every attribute rule; null values pass."""
    out = []
    for name, a in events.attributes.items():
        tests = []
        if a.values:
            tests.append(f"NOT ({name} IN ({', '.join(quote(v) for v in a.values)}))")
        nonfinite = f"(isnan({name}) OR isinf({name}))"
        if a.finite_only:
            tests.append(nonfinite)
        if a.bounds is not None:
            low, high = a.bounds
            outside = f"({name} < {low!r} OR {name} > {high!r})"
            tests.append(f"(NOT {nonfinite} AND {outside})"
                         if a.type == "double" and not a.finite_only else outside)
        out += [(name, f"coalesce({test}, false)") for test in tests]
    return out


def reason_sql(events: EventsConfig) -> str:
    """The quarantine reason of a line (null: good), checks in precast.data.raw_events' order."""
    r = raw_events
    whens = [f"WHEN top IS DISTINCT FROM 'OBJECT' THEN {quote(r.MALFORMED)}",
             f"WHEN {_corrupt(events)} THEN {_first_wrong_type(events)}"]
    whens += [f"WHEN {_wrong_json_type(events, leaf)} THEN "
              f"{quote(f'{r.WRONG_TYPE}:{leaf.path}')}"
              for leaf in r.leaves(events) if leaf.type == "string"]
    whens += [f"WHEN {'' if where is None else where + ' AND '}"
              f"{_read(events, leaf)} IS NULL THEN {quote(f'{r.MISSING}:{leaf.path}')}"
              for leaf, where in _required(events)]
    whens += [f"WHEN contains({leaf.column}, chr({ord(r.REPLACEMENT)})) THEN "
              f"{quote(f'{r.INVALID_UTF8}:{leaf.path}')}" for leaf in r.leaves(events)
              if leaf.column in (EVENT_ID, events.key.column)]
    if events.kind and events.kind.values:
        kinds = ", ".join(quote(k) for k in events.kind.values)
        whens.append(f"WHEN NOT ({events.kind.column} IN ({kinds})) THEN {quote(r.UNKNOWN_KIND)}")
    whens.append(f"WHEN {EVENT_TIME} IS NULL THEN "
                 f"{quote(f'{r.WRONG_TYPE}:{events.time.field}')}")
    whens.append(f"WHEN CAST(timezone('UTC', {EVENT_TIME}) AS DATE) <> dt "
                 f"THEN {quote(r.OUTSIDE)}")
    whens += [f"WHEN {test} THEN {quote(f'{r.INVALID}:{name}')}"
              for name, test in _invalid(events)]
    return "CASE " + "\n  ".join(whens) + " END"


def classify_sql(events: EventsConfig) -> str:
    """dt, line_number, value, reason (duplicates not yet marked) and the clean columns of
    every line of the view `lines`."""
    _supported(events)
    values = ", ".join(f"{_value(events, leaf)} AS {leaf.column}"
                       for leaf in raw_events.leaves(events))
    return (f"WITH typed AS ({typed_sql(events)}), valued AS (SELECT *, {values} FROM typed) "
            f"SELECT dt, line_number, value, {reason_sql(events)} AS reason, "
            f"{', '.join(events.columns)} FROM valued")


def lines_sql(files: Sequence[str]) -> str:
    """Every line of `files` as (dt, value, line_number), as Spark's text reader splits them."""
    listed = "[" + ", ".join(quote(f) for f in files) + "]"
    return LINES_SQL.replace("$files", listed)  # a view takes no parameters


LINES_SQL = """
SELECT CAST(regexp_extract(filename, 'dt=(\\d{4}-\\d{2}-\\d{2})', 1) AS DATE) AS dt,
       value, line_number
FROM (SELECT filename, unnest(parts) AS value, generate_subscripts(parts, 1) AS line_number,
             len(parts) AS n
      FROM (SELECT filename, regexp_split_to_array(content, '\\r\\n|\\r|\\n') AS parts
            FROM read_text($files)))
WHERE NOT (line_number = n AND value = '')  -- the terminator of the last line
"""

REPEATED_SQL = """
SELECT dt, event_id, min(line_number) AS first_line
FROM parsed WHERE reason IS NULL GROUP BY dt, event_id HAVING count(*) > 1
"""
# Good lines after the first of their (dt, event_id) get the duplicate reason; only the
# repeated ids are kept aside, so the lines are not copied (as mark_duplicates does).
MARK_DUPLICATES_SQL = f"""
SELECT p.* REPLACE (CASE WHEN p.reason IS NULL AND p.line_number <> r.first_line
                         THEN '{DUPLICATE}' ELSE p.reason END AS reason)
FROM parsed p LEFT JOIN repeated r USING (dt, event_id)
"""


def raw_files(raw_root: str, days: Sequence[str]) -> list[str]:
    """The files Spark's text reader reads for these days (hidden `_`/`.` names skipped)."""
    return sorted(str(f) for day in days for f in Path(raw_root, f"dt={day}").iterdir()
                  if f.is_file() and not f.name.startswith(("_", ".")))


def extract(con: Any, events: EventsConfig, files: Sequence[str], out: str) -> dict[str, Any]:
    """Classify every line of `files` (one table, like precast's persisted parse), write
    clean events and quarantine under `out`; per-day counts by reason."""
    con.execute(f"CREATE OR REPLACE TEMP VIEW lines AS {lines_sql(files)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE parsed AS {classify_sql(events)}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE repeated AS {REPEATED_SQL}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW classified AS {MARK_DUPLICATES_SQL}")
    Path(out).mkdir(parents=True, exist_ok=True)
    sort = ", ".join(["dt", EVENT_TIME, events.entity_key, "event_id"])
    con.execute(f"COPY (SELECT {', '.join(events.columns)}, dt FROM classified "
                f"WHERE reason IS NULL ORDER BY {sort}) TO {quote(out + '/events')} "
                "(FORMAT parquet, PARTITION_BY (dt), OVERWRITE)")
    con.execute("COPY (SELECT value AS raw, reason, line_number, dt FROM classified "
                f"WHERE reason IS NOT NULL ORDER BY dt, line_number) "
                f"TO {quote(out + '/quarantine')} (FORMAT parquet, PARTITION_BY (dt), OVERWRITE)")
    rows = con.execute("SELECT CAST(dt AS VARCHAR), reason, count(*) FROM classified "
                       "GROUP BY ALL").fetchall()
    return day_counts(rows)


def day_counts(rows: Sequence[tuple[str, str | None, int]]) -> dict[str, dict[str, Any]]:
    """{day: {read, kept, quarantined, duplicates, by_reason}} from (day, reason, lines)."""
    days: dict[str, dict[str, Any]] = {}
    for day, reason, lines in rows:
        got = days.setdefault(day, {"read": 0, "kept": 0, "quarantined": 0, "duplicates": 0,
                                    "by_reason": {}})
        got["read"] += lines
        if reason is None:
            got["kept"] += lines
        elif reason == DUPLICATE:
            got["duplicates"] += lines
        else:
            got["quarantined"] += lines
            got["by_reason"][reason] = lines
    return {day: {**got, "by_reason": dict(sorted(got["by_reason"].items()))}
            for day, got in sorted(days.items())}


def child_extract(payload: dict[str, Any]) -> dict[str, Any]:
    """The extract twin over the raw days of a world: seconds and per-day counts."""
    cfg = use_case(payload["config"], payload["home"])
    started = time.perf_counter()
    con = connect(driver_memory(cfg))
    counts = extract(con, cfg.events, raw_files(payload["raw"], payload["days"]),
                     payload["out"])
    return {"seconds": time.perf_counter() - started, "days": counts}


# ---------------------------------------------------------------- features: the use case's SQL


def duckdb_sql(spark_sql: str) -> str:
    """Spark SQL → DuckDB SQL, mechanically: `:name` binds → `$name`, and Spark's
    `date_sub`/`date_add`/`datediff` → the macros of SPARK_MACROS."""
    text = re.sub(r"\b(date_sub|date_add|datediff)\s*\(", r"spark_\1(", spark_sql)
    return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"$\1", text)


def _events_until(con: Any, end: date) -> None:
    """The view `events`: precast's clean events up to `end` (as features.build filters)."""
    con.execute("SET VARIABLE events_end = $end", {"end": end})
    con.execute("CREATE OR REPLACE TEMP VIEW events AS "
                "SELECT * FROM clean WHERE dt <= getvariable('events_end')")


def snapshot_rows(con: Any, cfg: Config, kind: str, snapshot: date, sql: dict[str, str]) -> None:
    """Append one snapshot's rows (labelled unless inference) to the table `ds_<kind>`."""
    from precast.data import datasets
    from precast.steps import features as step

    features_config = cfg.features
    _events_until(con, step.snapshot_end(kind, snapshot, features_config))
    con.execute(f"CREATE OR REPLACE TEMP TABLE entities AS {sql['features']}",
                step.feature_args(snapshot, features_config))
    keys = ", ".join(datasets.key_columns(cfg.events))
    rows = "SELECT * FROM entities"
    if kind != "inference":
        rows = (f"SELECT * FROM entities JOIN ({sql['labels']}) AS labels USING ({keys})")
    params = {} if kind == "inference" else step.label_args(snapshot, features_config)
    con.execute(f"INSERT INTO ds_{kind} {rows}" if _exists(con, f"ds_{kind}")
                else f"CREATE TEMP TABLE ds_{kind} AS {rows}", params)


def _exists(con: Any, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = $t",
                            {"t": table}).fetchone()[0])


def build_datasets(con: Any, cfg: Config, run_date: date, out: str) -> dict[str, int]:
    """Every dataset of precast's snapshot plan for `run_date`, written under `out/<kind>`."""
    from precast.data import datasets
    from precast.steps import features as step

    queries = step.Queries.of(cfg)
    sql = {"features": duckdb_sql(queries.features), "labels": duckdb_sql(queries.labels)}
    for name, (arguments, body) in SPARK_MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO spark_{name}({arguments}) AS {body}")
    keys = ", ".join(datasets.key_columns(cfg.events))
    rows = {}
    for kind, snapshots in step.snapshot_plan(run_date, cfg.features).items():
        for snapshot in snapshots:
            snapshot_rows(con, cfg, kind, snapshot, sql)
        Path(out, kind).mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM ds_{kind} ORDER BY {keys}) "
                    f"TO {quote(f'{out}/{kind}/part-0.parquet')} (FORMAT parquet)")
        rows[kind] = con.execute(f"SELECT count(*) FROM ds_{kind}").fetchone()[0]
    return rows


def child_features(payload: dict[str, Any]) -> dict[str, Any]:
    """The features twin over precast's clean events: seconds, rows per dataset, events read."""
    cfg = use_case(payload["config"], payload["home"])
    run_date = date.fromisoformat(payload["run_date"])
    started = time.perf_counter()
    con = connect(driver_memory(cfg))
    con.execute(f"CREATE TEMP TABLE clean AS SELECT * FROM read_parquet("
                f"{quote(cfg.lake.events() + '/*/*.parquet')}, hive_partitioning = true, "
                "hive_types = {'dt': DATE}) WHERE dt <= $end", {"end": run_date})
    rows = build_datasets(con, cfg, run_date, payload["out"])
    events = con.execute("SELECT count(*) FROM clean").fetchone()[0]
    return {"seconds": time.perf_counter() - started, "rows": rows, "events": events}


# ---------------------------------------------------------------- parity with precast's outputs


def precast_day_counts(lake: Lake, days: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-day counts from precast's manifests (clean events', else quarantine's)."""
    out = {}
    for day in days:
        when = date.fromisoformat(day)
        manifest = (read_json(manifest_path(lake.events(when)))
                    or read_json(manifest_path(lake.quarantine(when))) or {})
        out[day] = {name: manifest.get(name) for name in
                    ("read", "kept", "quarantined", "duplicates")}
        out[day]["by_reason"] = dict(sorted((manifest.get("quarantine_by_reason") or {}).items()))
    return out


def count_mismatches(precast: dict[str, dict[str, Any]], twin: dict[str, dict[str, Any]],
                     limit: int = 5) -> list[str]:
    """One line per day whose counts differ (the first `limit`, then how many more)."""
    empty = {"read": 0, "kept": 0, "quarantined": 0, "duplicates": 0, "by_reason": {}}
    lines = [f"{day}: precast {precast.get(day, empty)} vs twin {twin.get(day, empty)}"
             for day in sorted(set(precast) | set(twin))
             if precast.get(day, empty) != twin.get(day, empty)]
    return lines[:limit] + ([f"... and {len(lines) - limit} more days"]
                            if len(lines) > limit else [])


def rows_differing(con: Any, ours: str, theirs: str, columns: Sequence[str]) -> int:
    """Rows (with multiplicity) in one Parquet set and not the other, over `columns`."""
    cols = ", ".join(columns)
    read = "SELECT {cols} FROM read_parquet({path}, hive_partitioning = true, " \
           "hive_types = {{'dt': DATE}})"
    a, b = (read.format(cols=cols, path=quote(path)) for path in (ours, theirs))
    return int(con.execute(f"SELECT (SELECT count(*) FROM ({a} EXCEPT ALL {b})) + "
                           f"(SELECT count(*) FROM ({b} EXCEPT ALL {a}))").fetchone()[0])


def extract_parity(lake: Lake, events: EventsConfig, twin_out: str,
                   twin_days: dict[str, dict[str, Any]]) -> list[str]:
    """Problems when precast's extract and the twin's differ: per-day counts, then the
    clean rows and the quarantine rows themselves."""
    problems = count_mismatches(precast_day_counts(lake, sorted(twin_days)), twin_days)
    con = connect()
    clean = rows_differing(con, f"{lake.events()}/*/*.parquet",
                           f"{twin_out}/events/*/*.parquet", [*events.columns, "dt"])
    bad = rows_differing(con, f"{lake.quarantine()}/*/*.parquet",
                         f"{twin_out}/quarantine/*/*.parquet",
                         ["raw", "reason", "line_number", "dt"])
    problems += [f"{n} {what} rows differ" for n, what in ((clean, "clean"),
                                                            (bad, "quarantine")) if n]
    return problems


def features_parity(cfg: Config, run_date: date, twin_out: str,
                    tolerance: float = 1e-9) -> list[str]:
    """Problems when precast's datasets and the twin's differ: schema, keys, values
    (doubles within a relative `tolerance`)."""
    from precast.data import datasets

    con, keys, problems = connect(), datasets.key_columns(cfg.events), []
    for kind in datasets.KINDS:
        ours = f"{cfg.lake.dataset(kind, run_date)}/*.parquet"
        theirs = f"{twin_out}/{kind}/*.parquet"
        a, b = (con.execute(f"DESCRIBE SELECT * FROM {_dataset(p)}").fetchall()
                for p in (ours, theirs))
        if [(c[0], c[1]) for c in a] != [(c[0], c[1]) for c in b]:
            problems.append(f"{kind}: columns {[c[:2] for c in a]} vs twin {[c[:2] for c in b]}")
            continue
        problems += [f"{kind}: {line}" for line in
                     _value_mismatches(con, ours, theirs, keys, a, tolerance)]
    return problems


def _dataset(path: str) -> str:
    """A dataset's Parquet files (its run_date=... folder is not a column)."""
    return f"read_parquet({quote(path)}, hive_partitioning = false)"


def _value_mismatches(con: Any, ours: str, theirs: str, keys: Sequence[str],
                      columns: Sequence[tuple[Any, ...]], tolerance: float) -> list[str]:
    """Counts of keys on one side only and of differing values per column."""
    tests = {"missing in twin": f"b.{keys[0]} IS NULL",
             "only in twin": f"a.{keys[0]} IS NULL"}
    both = f"a.{keys[0]} IS NOT NULL AND b.{keys[0]} IS NOT NULL"
    for name, kind, *_ in columns:
        if name in keys:
            continue
        differ = (f"(a.{name} IS NULL) <> (b.{name} IS NULL) OR abs(a.{name} - b.{name})"
                  f" > {tolerance!r} * greatest(1, abs(a.{name}))" if kind == "DOUBLE"
                  else f"a.{name} IS DISTINCT FROM b.{name}")
        tests[name] = f"{both} AND ({differ})"
    sums = ", ".join(f"count(*) FILTER (WHERE {test})" for test in tests.values())
    row = con.execute(f"SELECT count(*), {sums} FROM {_dataset(ours)} a "
                      f"FULL JOIN {_dataset(theirs)} b USING ({', '.join(keys)})").fetchone()
    return [f"{n} rows: {what}" for what, n in zip(tests, row[1:], strict=True) if n]


CHILDREN = {"extract": child_extract, "features": child_features}

if __name__ == "__main__":
    child_main(CHILDREN)
