"""Extract on real Spark: planted bad lines are quarantined exactly, reruns replace one day."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from precast.config import Config, load_config
from precast.lake import Lake, read_json
from precast.steps import extract
from tests.helpers import CHURN, CHURN_LOGS

KINDS, generate = CHURN_LOGS.KINDS, CHURN_LOGS.generate

START = date(2026, 1, 1)
DAYS = [START + timedelta(days=i) for i in range(5)]
GEN = {"users": 50, "days": 5, "seed": 21, "start_date": START}
CLEAN_SCHEMA = [
    ("event_id", "string"), ("user_id", "string"), ("ts", "timestamp"), ("event_type", "string"),
    ("plan", "string"), ("device", "string"), ("country", "string"), ("amount", "double"),
    ("dt", "date"),
]


def _cfg(home: Path, **overrides: object) -> Config:
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(home)})
    return cfg.with_overrides({"extract.max_quarantine_rate": 0.5, **overrides})


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """(mtime, bytes) of every file under a folder."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _raw_lines(lake: Lake, day: date) -> list[str]:
    return Path(lake.raw_events(day), "events.jsonl").read_text().splitlines()


def _copy_raw(src: Config, dst: Config, days: list[date] | None = None) -> None:
    for day in days or DAYS:
        shutil.copytree(Lake(src.lake_root).raw_events(day), Lake(dst.lake_root).raw_events(day))


@pytest.fixture(scope="module")
def extracted(spark, tmp_path_factory):
    """Five generated days with ~8% planted bad lines, extracted in one run on the last day."""
    cfg = _cfg(tmp_path_factory.mktemp("extract") / "home")
    generate(cfg.lake_root, corrupt_fraction=0.08, **GEN)
    result = extract.run(cfg, DAYS[-1], spark)
    return cfg, result


def _planted(cfg: Config) -> dict:
    return json.loads((Path(cfg.lake_root) / "raw" / "events" / "_planted.json").read_text())


def test_fresh_lake_gets_its_history_in_one_run(extracted) -> None:
    _, result = extracted
    assert [d.day for d in result.days] == DAYS
    assert result.read == result.kept + result.quarantined + result.duplicates


def test_quarantine_matches_planted_exactly(spark, extracted) -> None:
    cfg, result = extracted
    planted = _planted(cfg)
    rows = spark.read.parquet(Lake(cfg.lake_root).quarantine()).groupBy("dt", "reason").count()
    on_disk: dict[str, Counter] = {}
    for row in rows.collect():
        on_disk.setdefault(row["dt"].isoformat(), Counter())[row["reason"]] += row["count"]
    for counts in result.days:
        day = counts.day.isoformat()
        expected = planted["days"][day]
        by_kind = Counter({k: 0 for k in KINDS})
        for reason, n in counts.by_reason.items():
            by_kind[reason.split(":")[0]] += n
        by_kind["duplicate_event_id"] = counts.duplicates
        assert dict(by_kind) == expected, day
        missing = {r.split(":")[1]: n for r, n in counts.by_reason.items()
                   if r.startswith("missing_field:")}
        assert missing == {f: n for f, n in planted["missing_field_names"][day].items() if n}
        assert counts.read == planted["lines"][day]
        expected_on_disk = {**counts.by_reason, "duplicate_event_id": counts.duplicates}
        assert on_disk[day] == Counter(expected_on_disk)
    assert sum(planted["totals"].values()) == result.quarantined + result.duplicates


def test_quarantine_keeps_raw_line_and_line_number(spark, extracted) -> None:
    cfg, _ = extracted
    lake = Lake(cfg.lake_root)
    rows = spark.read.parquet(lake.quarantine()).collect()
    reasons = {r["reason"] for r in rows}
    assert {r.split(":")[0] for r in reasons} >= {"malformed_json", "wrong_type"}
    # a wrong type names its field: the amount as text, or the properties as text or a list
    assert {r for r in reasons if r.startswith("wrong_type")} == {
        "wrong_type:properties", "wrong_type:properties.amount"}
    for row in rows:
        assert _raw_lines(lake, row["dt"])[row["line_number"] - 1] == row["raw"]


def test_clean_events_have_the_contract_schema_and_exact_rows(spark, extracted, tmp_path) -> None:
    cfg, result = extracted
    clean = spark.read.parquet(Lake(cfg.lake_root).events())
    assert [(f.name, f.dataType.simpleString()) for f in clean.schema.fields] == CLEAN_SCHEMA
    # Oracle: the same seed without corruption; planted lines replace events or add copies.
    generate(str(tmp_path), **GEN)
    good = {}
    for day in DAYS:
        for line in _raw_lines(Lake(str(tmp_path)), day):
            e = json.loads(line)
            ts = datetime.strptime(e["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            good[e["event_id"]] = (e["user_id"], ts, e["event_type"], *e["properties"].values(),
                                   day)
    rows = clean.collect()
    assert len(rows) == result.kept == len({r["event_id"] for r in rows})
    for r in rows:
        ts = r["ts"].replace(tzinfo=UTC)  # session time zone is UTC
        got = (r["user_id"], ts, r["event_type"], r["plan"], r["device"], r["country"],
               r["amount"], r["dt"])
        assert got == good[r["event_id"]]
    manifest = read_json(f"{Lake(cfg.lake_root).events(DAYS[0])}/_manifest.json")
    assert manifest is not None and manifest["kept"] == result.days[0].kept
    assert manifest["fingerprint"] == result.days[0].fingerprint


def test_rerun_of_a_day_is_identical_and_leaves_other_days_alone(spark, extracted) -> None:
    cfg, first = extracted
    lake, day = Lake(cfg.lake_root), DAYS[2]
    others = [Path(lake.events(d)) for d in DAYS if d != day]
    others += [Path(lake.quarantine(d)) for d in DAYS if d != day]
    before = {str(p): _snapshot(p) for p in others}
    manifest = read_json(f"{lake.events(day)}/_manifest.json")
    again = extract.run(cfg, day, spark)
    assert [d.day for d in again.days] == [day]
    assert again.days[0] == first.days[2]
    assert read_json(f"{lake.events(day)}/_manifest.json") == manifest
    assert {str(p): _snapshot(p) for p in others} == before


def test_out_of_order_days_give_the_same_output(spark, extracted, tmp_path) -> None:
    cfg, first = extracted
    other = _cfg(tmp_path / "home", **{"extract.lookback_days": 0})
    _copy_raw(cfg, other)
    by_day = {d.day: d for d in first.days}
    for day in (DAYS[3], DAYS[1], DAYS[2]):
        assert extract.run(other, day, spark).days == (by_day[day],)

    def rows(c: Config):
        df = spark.read.parquet(Lake(c.lake_root).events())
        return sorted(df.where(df.dt.isin(DAYS[1:4])).collect())

    assert rows(other) == rows(cfg)


def test_quarantine_rate_over_limit_fails_without_clean_day(spark, extracted, tmp_path) -> None:
    cfg, first = extracted
    ok = _cfg(tmp_path / "home", **{"extract.lookback_days": 0})
    strict = ok.with_overrides({"extract.max_quarantine_rate": 0.01})
    _copy_raw(cfg, ok, DAYS[:2])
    lake = Lake(ok.lake_root)
    extract.run(ok, DAYS[0], spark)
    clean_before = _snapshot(Path(lake.events(DAYS[0])))
    rate = first.days[1].quarantine_rate
    message = rf"2026-01-02: quarantine rate {rate:.2%} exceeds limit 1\.00%"
    with pytest.raises(extract.QuarantineRateExceeded, match=message) as err:
        extract.run(strict, DAYS[1], spark)
    assert err.value.days == (DAYS[1],)
    assert not Path(lake.events(DAYS[1])).exists()
    bad = spark.read.parquet(lake.quarantine(DAYS[1]))
    assert bad.count() == first.days[1].quarantined + first.days[1].duplicates
    with pytest.raises(extract.QuarantineRateExceeded, match="2026-01-01"):
        extract.run(strict, DAYS[0], spark)
    assert _snapshot(Path(lake.events(DAYS[0]))) == clean_before


def test_a_failed_earlier_day_is_alerted_and_skipped_while_today_flows(
        spark, extracted, tmp_path) -> None:
    from precast.monitoring import alerts

    cfg, _ = extracted
    mine = _cfg(tmp_path / "home", **{"extract.max_quarantine_rate": 0.2,
                                      "extract.lookback_days": 3})
    _copy_raw(cfg, mine, DAYS[:3])
    lake = Lake(mine.lake_root)
    raw = Path(lake.raw_events(DAYS[1])) / "events.jsonl"
    good = raw.read_text()
    raw.write_text(good + "{not json\n" * len(good.splitlines()))  # half the day is garbage
    result = extract.run(mine, DAYS[2], spark)  # today is clean: the run succeeds
    assert [d.day for d in result.days] == DAYS[:3]
    assert Path(lake.events(DAYS[2])).exists() and not Path(lake.events(DAYS[1])).exists()
    ((day, why),) = extract.failed_days(lake)
    assert day == DAYS[1] and why.startswith("quarantine rate 5")
    (alert,) = alerts.alerts_of(mine)
    assert (alert["rule"], alert["severity"]) == ("extract_day_failed", "critical")
    assert [d.day for d in extract.run(mine, DAYS[2], spark).days] == [DAYS[2]]  # skipped
    raw.write_text(good)  # the day is repaired and reprocessed as a run date of its own
    extract.run(mine, DAYS[1], spark)
    assert extract.failed_days(lake) == [] and Path(lake.events(DAYS[1])).exists()


def test_missing_raw_day_fails_clearly(cfg: Config) -> None:
    missing = Lake(cfg.lake_root).raw_events(date(2026, 2, 1))
    with pytest.raises(FileNotFoundError, match=f"no raw events for 2026-02-01: {missing}"):
        extract.run(cfg, date(2026, 2, 1))


def test_parse_events_reasons_on_handwritten_lines(spark, cfg: Config) -> None:
    good = ('{"event_id":"e%d","user_id":"u1","ts":"2026-01-01T10:00:0%dZ","event_type":"play",'
            '"properties":{"plan":"free","device":"tv","country":"US","amount":null}}')
    lines = [
        good % (1, 1),
        good % (1, 1),                                      # exact copy: duplicate
        good % (2, 2),
        '{"event_id":"e3","user_id":"u1"',                  # truncated
        (good % (4, 4)).replace('"amount":null', '"amount":"n/a"'),
        (good % (5, 5)).replace('"user_id":"u1",', ""),
        (good % (6, 6)).replace('"play"', '"login"'),
        (good % (7, 7)).replace("2026-01-01T", "2026-01-02T"),
        (good % (8, 8)).replace("10:00:08Z", "10:00:08+01:00"),  # an offset: 09:00:08 UTC
        (good % (9, 9)).replace('"u1"', "42"),              # a number where a string is due
        (good % (10, 0)).replace('"free"', '{"tier":"free"}'),  # an object where text is due
        (good % (11, 1)).replace("10:00:01Z", "10:00:01"),  # no zone: not ISO-8601 UTC
    ]
    df = spark.createDataFrame([(v,) for v in lines], "value string")
    clean, quarantine, duplicates = extract.parse_events(df, START, cfg.events)
    assert sorted(r["event_id"] for r in clean.collect()) == ["e1", "e2", "e8", "e9"]
    assert [r["user_id"] for r in clean.where("event_id = 'e9'").collect()] == ["42"]
    assert [r["ts"] for r in clean.where("event_id = 'e8'").collect()] == [
        datetime(2026, 1, 1, 9, 0, 8)]
    assert sorted(r["reason"] for r in quarantine.collect()) == [
        "malformed_json", "missing_field:user_id", "ts_outside_partition",
        "unknown_event_type", "wrong_type:properties.amount", "wrong_type:properties.plan",
        "wrong_type:ts",
    ]
    assert [(r["raw"], r["reason"]) for r in duplicates.collect()] == [
        (lines[1], "duplicate_event_id")
    ]


def test_line_numbers_are_exact_when_files_split_into_blocks(spark, extracted) -> None:
    cfg, _ = extracted
    lake = Lake(cfg.lake_root)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "4096")
    try:
        assert extract.scan_lines(spark, lake, DAYS).rdd.getNumPartitions() > len(DAYS)
        rows = extract.read_lines(spark, lake, DAYS).collect()
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    got = {(r["dt"], r["line_number"]): r["value"] for r in rows}
    expected = {
        (day, i): line for day in DAYS for i, line in enumerate(_raw_lines(lake, day), 1)
    }
    assert got == expected
