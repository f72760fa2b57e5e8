"""Extract (Spark): raw JSON lines → clean events Parquet, bad lines → quarantine.

`run(cfg, run_date)` extracts the run date plus every earlier day (within
`extract.lookback_days`) that has raw data but no clean partition yet, in one Spark
job. Re-running a day replaces that day only. Entry point: `jobs/extract.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from precast.config import EVENT_ID, EVENT_TIME, Config, EventsConfig
from precast.data import raw_events
from precast.errors import NotRetryable
from precast.lake import (
    Lake,
    content_hash,
    delete_dir,
    exists,
    list_partitions,
    manifest_path,
    size,
)
from precast.lake import read_json as read_lake_json
from precast.lake import write_json as write_lake_json

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

DUPLICATE = "duplicate_event_id"  # the other reasons: precast.data.raw_events


class QuarantineRateExceeded(NotRetryable, ValueError):
    """A day's quarantine rate is above `extract.max_quarantine_rate`."""

    def __init__(self, message: str, days: Sequence[date]) -> None:
        super().__init__(message)
        self.days = tuple(days)


class RawPartitionMissing(FileNotFoundError):
    """The run date has no raw partition."""


@dataclass(frozen=True)
class DayCounts:
    """One extracted day: line counts, quarantine by reason, clean-content fingerprint."""

    day: date
    read: int
    kept: int
    quarantined: int
    duplicates: int
    by_reason: dict[str, int]
    fingerprint: str

    @property
    def quarantine_rate(self) -> float:
        """Quarantined / read (duplicates are not counted as quarantined)."""
        return self.quarantined / self.read if self.read else 0.0


@dataclass(frozen=True)
class ExtractResult:
    """Per-day counts of one extract run (days in date order) and their totals."""

    run_date: date
    days: tuple[DayCounts, ...]

    def _total(self, field: str) -> int:
        return sum(getattr(d, field) for d in self.days)

    @property
    def read(self) -> int:
        return self._total("read")

    @property
    def kept(self) -> int:
        return self._total("kept")

    @property
    def quarantined(self) -> int:
        return self._total("quarantined")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")


def parse_lines(lines: DataFrame, events: EventsConfig, day: date | None = None) -> DataFrame:
    """Parse raw lines (`value`, optional `dt`) into the clean columns plus a reason
    (precast.data.raw_events: the mapping in `events` decides both).

    The reason is null for a good line; duplicates are not marked yet (see
    `mark_duplicates`). Other input columns (line numbers, file metadata) pass through.
    """
    from pyspark.sql import functions as F

    if day is not None:
        lines = lines.withColumn("dt", F.lit(day))
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": raw_events.CORRUPT}
    passthrough = [c for c in lines.columns if c not in ("dt", "value")]
    parsed = lines.select(
        F.col("dt").cast("date").alias("dt"), "value", *passthrough,
        F.from_json("value", raw_events.parse_schema(events), options).alias("j"),
    )
    return parsed.select("dt", "value", *passthrough, raw_events.reason(events).alias("reason"),
                         *raw_events.clean_values(events))


def _with_order(parsed: DataFrame) -> DataFrame:
    """`parsed` plus `_order`: the line number (input order when there are no line numbers)."""
    from pyspark.sql import functions as F

    if "line_number" not in parsed.columns:
        parsed = parsed.withColumn("line_number", F.lit(None).cast("long"))
    return parsed.withColumn("_order", F.coalesce("line_number", F.monotonically_increasing_id()))


def repeated_ids(parsed: DataFrame) -> DataFrame:
    """(dt, event_id, _first) for every event id on more than one good line of a day, with
    the order of its first line: all `mark_duplicates` needs, small enough to keep."""
    from pyspark.sql import functions as F

    return (
        _with_order(parsed).where(F.col("reason").isNull()).groupBy("dt", "event_id")
        .agg(F.min("_order").alias("_first"), F.count("*").alias("_n")).where("_n > 1")
        .drop("_n")
    )


def mark_duplicates(parsed: DataFrame, repeated: DataFrame | None = None) -> DataFrame:
    """Give good lines that repeat an earlier line's event_id (same day) the duplicate reason.

    The first line by `line_number` is kept (input order when there are no line numbers).
    Only (dt, event_id, order) is aggregated (`repeated_ids`, unless given) and the repeated
    ids broadcast back, so the lines themselves are never shuffled.
    """
    from pyspark.sql import functions as F

    repeated = repeated_ids(parsed) if repeated is None else repeated
    marked = _with_order(parsed).join(F.broadcast(repeated), ["dt", "event_id"], "left")
    duplicate = F.col("reason").isNull() & (F.col("_order") != F.col("_first"))
    return marked.withColumn(
        "reason", F.when(duplicate, F.lit(DUPLICATE)).otherwise(F.col("reason"))
    ).drop("_order", "_first")


def classify(lines: DataFrame, events: EventsConfig, day: date | None = None) -> DataFrame:
    """Parse lines and mark duplicates: dt, value, line_number, reason (null = clean), columns."""
    return mark_duplicates(parse_lines(lines, events, day))


def quarantine_rows(classified: DataFrame) -> DataFrame:
    """Every line with a reason, duplicates included, in the quarantine layout (+ dt)."""
    from pyspark.sql import functions as F

    return classified.where(F.col("reason").isNotNull()).select(
        F.col("value").alias("raw"), "reason", F.col("line_number").cast("long"), "dt"
    )


def split_classified(classified: DataFrame, columns: Sequence[str]
                     ) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(clean, quarantine, duplicates) from `classify`'s output; clean has `columns` + dt."""
    from pyspark.sql import functions as F

    reason, bad = F.col("reason"), quarantine_rows(classified)
    return (
        classified.where(reason.isNull()).select(*columns, "dt"),
        bad.where(F.col("reason") != DUPLICATE),
        bad.where(F.col("reason") == DUPLICATE),
    )


def parse_events(
    lines: DataFrame, day: date | None, events: EventsConfig
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Raw lines → (clean, quarantine, duplicates); `day` sets dt when lines have none."""
    return split_classified(classify(lines, events, day), events.columns)


def scan_lines(spark: SparkSession, lake: Lake, days: Sequence[date]) -> DataFrame:
    """Raw lines of `days` (dt, value) with the file block and row id `number_lines` needs."""
    from pyspark.sql import functions as F

    return spark.read.option("basePath", lake.raw_events()).text(
        [lake.raw_events(d) for d in days]
    ).select(
        F.to_date(F.col("dt").cast("string")).alias("dt"), "value",
        F.col("_metadata.file_path").alias("_file"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_row_id"),
    )


def number_lines(scanned: DataFrame) -> DataFrame:
    """Replace `scan_lines`' file/block/row id by a 1-based line number within the file.

    Row ids are consecutive within a file block, so a line's number is its offset in
    the block plus the line count of the file's earlier blocks. The block summary is
    a second scan of the same files: same splits, so the same row ids.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    blocks = scanned.groupBy("_file", "_block").agg(
        F.min("_row_id").alias("_first_id"), F.count("*").alias("_lines")
    ).withColumn(
        "_before",
        F.sum("_lines").over(Window.partitionBy("_file").orderBy("_block")) - F.col("_lines"),
    )
    numbered = scanned.join(F.broadcast(blocks), ["_file", "_block"]).withColumn(
        "line_number", F.col("_row_id") - F.col("_first_id") + F.col("_before") + 1
    )
    return numbered.drop("_file", "_block", "_row_id", "_first_id", "_lines", "_before")


def read_lines(spark: SparkSession, lake: Lake, days: Sequence[date]) -> DataFrame:
    """Raw lines of `days` as (dt, value, line_number)."""
    return number_lines(scan_lines(spark, lake, days))


def day_counts(classified: DataFrame, columns: Sequence[str]) -> dict[date, DayCounts]:
    """Counts per day and reason, and each day's fingerprint of the clean `columns` (one
    Spark job)."""
    from pyspark.sql import functions as F

    row_hash = F.xxhash64(*columns).cast("decimal(38,0)")
    rows = classified.groupBy("dt", "reason").agg(
        F.count("*").alias("n"), F.sum(row_hash).cast("string").alias("hash_sum")
    ).collect()
    grouped: dict[date, dict[str | None, tuple[int, str]]] = {}
    for row in rows:
        grouped.setdefault(row["dt"], {})[row["reason"]] = (row["n"], row["hash_sum"])
    return {day: _day_counts(day, groups) for day, groups in grouped.items()}


def _day_counts(day: date, groups: dict[str | None, tuple[int, str]]) -> DayCounts:
    """DayCounts from one day's (reason → (rows, hash sum)) groups."""
    kept, hash_sum = groups.get(None, (0, "0"))
    by_reason = {r: n for r, (n, _) in sorted(groups.items(), key=lambda kv: str(kv[0]))
                 if r is not None and r != DUPLICATE}
    return DayCounts(
        day=day, read=sum(n for n, _ in groups.values()), kept=kept,
        quarantined=sum(by_reason.values()), duplicates=groups.get(DUPLICATE, (0, ""))[0],
        by_reason=by_reason, fingerprint=content_hash("events", kept, hash_sum or "0"),
    )


def days_to_extract(lake: Lake, run_date: date, lookback_days: int,
                    mapping: str) -> list[date]:
    """The run date plus earlier days in the lookback with raw data whose clean events are
    missing or were extracted under another mapping (`raw_events.mapping_version`). An
    earlier day that failed under this mapping is skipped (:func:`failed_days`) until it is
    extracted again as a run date of its own."""
    if not exists(lake.raw_events(run_date)):
        raise RawPartitionMissing(
            f"no raw events for {run_date}: {lake.raw_events(run_date)} does not exist"
        )
    raw = set(list_partitions(lake.raw_events(), "dt"))
    earlier = (run_date - timedelta(days=k) for k in range(lookback_days, 0, -1))
    return [
        d for d in earlier
        if d.isoformat() in raw and extracted_with(lake, d) != mapping
        and failed_with(lake, d) != mapping
    ] + [run_date]


def failed_with(lake: Lake, day: date) -> str | None:
    """The mapping version under which a day's last extract failed its quarantine limit
    (None: it did not; every extract of a day rewrites its quarantine manifest)."""
    manifest = read_lake_json(manifest_path(lake.quarantine(day)))
    return str(manifest.get("mapping")) if manifest and manifest.get("failed") else None


def failed_days(lake: Lake) -> list[tuple[date, str]]:
    """Days whose last extract failed, with the reason."""
    out = []
    for name in list_partitions(lake.quarantine(), "dt"):
        day = date.fromisoformat(name)
        manifest = read_lake_json(manifest_path(lake.quarantine(day))) or {}
        if manifest.get("failed"):
            out.append((day, str(manifest.get("failure", "failed"))))
    return out


def extracted_with(lake: Lake, day: date) -> str | None:
    """The mapping version a day's clean events were extracted under (None: not extracted,
    or by a precast that did not record it)."""
    manifest = read_lake_json(manifest_path(lake.events(day)))
    return None if manifest is None else manifest.get("mapping")


def _overwrite_days(df: DataFrame, path: str, sort: Sequence[str]) -> None:
    """Write `df` partitioned by dt, replacing only the dt partitions it contains.

    No shuffle: each input split holds whole files, so a day is usually one file.
    """
    (
        df.sortWithinPartitions("dt", *sort)
        .write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
        .partitionBy("dt").parquet(path)
    )


def _manifest(counts: DayCounts, lake: Lake, events: EventsConfig) -> dict[str, Any]:
    """The `_manifest.json` document of one extracted day (no timestamps: reruns match)."""
    return {
        "day": counts.day.isoformat(), "read": counts.read, "kept": counts.kept,
        "quarantined": counts.quarantined, "duplicates": counts.duplicates,
        "quarantine_rate": round(counts.quarantine_rate, 6),
        "quarantine_by_reason": counts.by_reason, "fingerprint": counts.fingerprint,
        "columns": [*events.columns, "dt"], "mapping": raw_events.mapping_version(events),
        "source": lake.raw_events(counts.day),
    }


def _publish(classified: DataFrame, lake: Lake, events: EventsConfig,
             counts: Sequence[DayCounts], passing: Iterable[date], limit: float) -> None:
    """Write quarantine for every day, clean events and manifests for passing days only."""
    from pyspark.sql import functions as F

    if any(c.quarantined + c.duplicates for c in counts):
        _overwrite_days(quarantine_rows(classified), lake.quarantine(), ["line_number"])
    passing = set(passing)
    for c in counts:
        if not c.quarantined + c.duplicates:
            delete_dir(lake.quarantine(c.day))
        failed = {} if c.day in passing else {"failed": True, "failure": failure(c, limit)}
        write_lake_json(manifest_path(lake.quarantine(c.day)),
                        {**_manifest(c, lake, events), **failed})
    ok = [c for c in counts if c.day in passing]
    if any(c.kept for c in ok):
        keep_days = [c.day for c in ok if c.kept]
        clean = split_classified(classified, events.columns)[0]
        _overwrite_days(clean.where(F.col("dt").isin(keep_days)), lake.events(),
                        [EVENT_TIME, events.entity_key, EVENT_ID])
    for c in ok:
        if not c.kept:
            delete_dir(lake.events(c.day))
        write_lake_json(manifest_path(lake.events(c.day)), _manifest(c, lake, events))


def failure(counts: DayCounts, limit: float) -> str:
    """Why a day failed: its rate, the limit and the top reasons."""
    top = sorted(counts.by_reason.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    return (f"quarantine rate {counts.quarantine_rate:.2%} exceeds limit {limit:.2%} "
            f"({counts.quarantined} of {counts.read} lines; top reasons: "
            f"{', '.join(f'{r}={n}' for r, n in top)})")


def _failure_message(failing: Sequence[DayCounts], limit: float) -> str:
    """One line naming the failing day(s), their rates, the limit and the top reasons."""
    first = failing[0]
    others = f" (also failing: {', '.join(str(c.day) for c in failing[1:])})" if failing[1:] else ""
    return (f"extract {first.day}: {failure(first, limit)}{others}; clean partition not "
            "written")


def _log_counts(result: ExtractResult) -> None:
    """Log each day's counts and the run's totals."""
    for c in result.days:
        log.info("extract %s: read=%d kept=%d quarantined=%d duplicates=%d rate=%.4f %s",
                 c.day, c.read, c.kept, c.quarantined, c.duplicates, c.quarantine_rate,
                 c.by_reason)
    log.info("extract run %s: %d day(s), read=%d kept=%d quarantined=%d duplicates=%d",
             result.run_date, len(result.days), result.read, result.kept, result.quarantined,
             result.duplicates)


def run(cfg: Config, run_date: date, spark: SparkSession | None = None) -> ExtractResult:
    """Extract the run date and unextracted earlier days; fail on a high quarantine rate."""
    from pyspark import StorageLevel

    from precast.engines.spark import spark_session

    lake = cfg.lake
    days = days_to_extract(lake, run_date, cfg.extract.lookback_days,
                           raw_events.mapping_version(cfg.events))
    spark = spark or spark_session(cfg, input_bytes=size([lake.raw_events(d) for d in days]))
    parsed = parse_lines(read_lines(spark, lake, days), cfg.events)
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK_DESER)  # one scan and parse for all
    repeated = repeated_ids(parsed).persist()  # counted, then written twice
    classified = mark_duplicates(parsed, repeated)
    try:
        found = day_counts(classified, cfg.events.columns)
        counts = [found.get(d) or _day_counts(d, {}) for d in days]
        limit = cfg.extract.max_quarantine_rate
        failing = [c for c in counts if c.quarantine_rate > limit]
        _publish(classified, lake, cfg.events, counts,
                 [c.day for c in counts if c not in failing], limit)
    finally:
        repeated.unpersist()
        parsed.unpersist()
    result = ExtractResult(run_date=run_date, days=tuple(counts))
    _log_counts(result)
    if any(c.day == run_date for c in failing):
        raise QuarantineRateExceeded(_failure_message(failing, limit), [c.day for c in failing])
    if failing:  # earlier days only: today's clean data still flows; they are alerted
        _alert_failed_days(cfg, failing, limit)
    return result


def _alert_failed_days(cfg: Config, failing: Sequence[DayCounts], limit: float) -> None:
    """An alert per earlier day that failed (skipped by later runs until extracted again)."""
    from precast.monitoring.alerts import Alert, raise_alerts

    raise_alerts(cfg, [Alert(c.day, "extract_day_failed", c.day.isoformat(),
                             f"extract {c.day}: {failure(c, limit)}; skipped by later runs "
                             f"until `precast run extract --date {c.day}` succeeds",
                             c.quarantine_rate, limit, "critical") for c in failing])
