"""`precast check`: dry-run a use case's mapping and SQL on a sample of its newest raw day.

Reads the first `sample` lines of the newest raw day, classifies them with the `events`
mapping (kept, or quarantined per reason with an example line each), compiles the feature
and label SQL against those clean rows, and checks the config's column names against what
the SQL returns. It writes nothing: no lake, store, registry or GX files are touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from precast.config import Config
from precast.lake import Lake, list_partitions

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EXAMPLE_CHARS = 160


@dataclass(frozen=True)
class CheckReport:
    """What `precast check` found; `problems` is empty when the use case is ready."""

    day: date
    source: str
    sampled: int
    kept: int
    reasons: dict[str, int]  # quarantine and duplicate reasons -> lines
    examples: dict[str, tuple[int, str]]  # reason -> (line number, the line, shortened)
    clean_columns: list[tuple[str, str]]
    feature_columns: list[tuple[str, str]] = field(default_factory=list)
    label_columns: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def newest_raw_day(lake: Lake) -> date:
    """The newest day partition with raw events (FileNotFoundError naming the folder)."""
    days = list_partitions(lake.raw_events(), "dt")
    if not days:
        raise FileNotFoundError(f"no raw events under {lake.raw_events()} (dt=YYYY-MM-DD/)")
    return date.fromisoformat(days[-1])


def run(cfg: Config, spark: SparkSession | None = None, day: date | None = None,
        sample: int = 10_000) -> CheckReport:
    """Classify a sample of `day` (default: the newest raw day) and dry-run the SQL on it."""
    from pyspark.sql import functions as F

    from precast.engines.spark import spark_session
    from precast.steps import extract

    lake = cfg.lake
    day = day or newest_raw_day(lake)
    spark = spark or spark_session(cfg)
    lines = extract.read_lines(spark, lake, [day]).where(F.col("line_number") <= sample)
    classified = extract.classify(lines, cfg.events).cache()
    try:
        rows = classified.groupBy("reason").agg(
            F.count("*").alias("n"), F.min_by(F.struct("line_number", "value"),
                                              "line_number").alias("first")).collect()
        reasons = {r["reason"]: r["n"] for r in rows if r["reason"] is not None}
        examples = {r["reason"]: (r["first"]["line_number"], _short(r["first"]["value"]))
                    for r in rows if r["reason"] is not None}
        kept = sum(r["n"] for r in rows if r["reason"] is None)
        clean = extract.split_classified(classified, cfg.events.columns)[0]
        report = CheckReport(day, lake.raw_events(day), kept + sum(reasons.values()), kept,
                             reasons, examples, _types(clean))
        if not kept and reasons:
            top = max(reasons, key=lambda r: (reasons[r], r))
            report.problems.append(f"no sampled line was kept; the most common reason is {top} "
                                   f"(e.g. line {examples[top][0]})")
        report.problems.extend(_absent_fields(cfg, clean, kept))
        _dry_run_sql(cfg, spark, clean, day, report)
    finally:
        classified.unpersist()
    return report


def _short(line: str) -> str:
    return line if len(line) <= EXAMPLE_CHARS else line[: EXAMPLE_CHARS - 1] + "…"


def _types(df: DataFrame) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


def _absent_fields(cfg: Config, clean: DataFrame, kept: int) -> list[str]:
    """A mapped attribute or object that no kept line has: most likely a wrong path."""
    from pyspark.sql import functions as F

    events = cfg.events
    named = {**{a: events.attribute_path(a) for a in events.attributes}, **events.objects}
    if not kept or not named:
        return []
    present = clean.agg(*[F.count(c).alias(c) for c in named]).first()
    return [f"events mapping: {column} (field {path!r}) is absent from all {kept} kept lines"
            for column, path in named.items() if present is None or present[column] == 0]


def _dry_run_sql(cfg: Config, spark: SparkSession, clean: DataFrame, day: date,
                 report: CheckReport) -> None:
    """Compile the feature and label SQL on the clean sample; name the columns it lacks."""
    from pyspark.errors import PySparkException

    from precast.data import datasets
    from precast.steps import features

    features_config, keys = cfg.features, datasets.key_columns(cfg.events)
    queries = features.Queries.of(cfg)
    clean.createOrReplaceTempView("events")
    sql_file = features_config.features_sql
    try:
        feats = features.features_for(spark, day, features_config, queries)
        report.feature_columns.extend(_types(feats))
        feats.createOrReplaceTempView("entities")
        sql_file = features_config.labels_sql
        labels = spark.sql(queries.labels, args=features.label_args(day, features_config))
        report.label_columns.extend(_types(labels))
    except PySparkException as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        report.problems.append(f"{sql_file} does not compile on the clean events: {first}")
        return
    finally:
        spark.catalog.dropTempView("events")
        spark.catalog.dropTempView("entities")
    report.problems.extend(features.unreturned(cfg, dict(report.feature_columns)))
    report.problems.extend(features.unlabelled(features_config, keys, dict(report.label_columns)))
