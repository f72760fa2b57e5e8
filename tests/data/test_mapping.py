"""Raw logs mapped by configuration (precast.data.raw_events through extract): other field names,
nested paths, every time format, derived ids, wrong JSON types and attribute rules."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from precast.config import Config, ConfigError, load_config
from precast.lake import Lake
from precast.steps import extract, features
from tests.helpers import CHURN

DAY = date(2026, 3, 1)
# An online shop's order log: other names, epoch seconds, no event id, nested details.
SHOP: dict[str, Any] = {
    "key": {"column": "customer_id", "field": "customer.id"},
    "id": None,
    "time": {"field": "time", "format": "epoch_s"},
    "kind": {"column": "action", "values": ["view", "order", "refund"]},
    "attributes": {
        "total": {"field": "order.total", "type": "double", "min": 0, "finite": True},
        "items": {"field": "order.items", "type": "long", "min": 1},
        "gift": {"field": "order.gift", "type": "boolean"},
        "channel": {"field": "meta.channel", "required": True, "values": ["web", "app"]},
    },
    "objects": {"details": "order"},
}
T0 = int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())


def _cfg(tmp_path: Path, events: dict[str, Any]) -> Config:
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(tmp_path / "home")})
    return cfg.with_overrides({"events": events, "extract.max_quarantine_rate": 1.0})


def _line(**fields: Any) -> str:
    event = {"customer": {"id": "c1"}, "time": T0, "action": "order",
             "order": {"total": 12.5, "items": 2, "gift": False}, "meta": {"channel": "web"}}
    for dotted, value in fields.items():
        *outer, last = dotted.split("__")
        node: Any = event
        for part in outer:
            node = node[part]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return json.dumps(event)


def _parse(spark, cfg: Config, lines: list[str]) -> tuple[list[Any], list[Any], list[Any]]:
    df = spark.createDataFrame([(v,) for v in lines], "value string")
    clean, quarantine, duplicates = extract.parse_events(df, DAY, cfg.events)
    return clean.collect(), quarantine.collect(), duplicates.collect()


def _outcomes(spark, cfg: Config, cases: dict[str, str]) -> dict[str, Any]:
    """Parse every case's line (each has its name as `eid`, the mapped id) in one Spark job:
    name -> the clean row, or the quarantine reason."""
    clean, quarantine, _ = _parse(spark, cfg, list(cases.values()))
    out: dict[str, Any] = {r["event_id"]: r for r in clean}
    out.update({json.loads(r["raw"])["eid"]: r["reason"] for r in quarantine})
    return out


WITH_ID = {**SHOP, "id": {"field": "eid"}}
TIMES: dict[str, list[tuple[Any, datetime | str]]] = {  # value -> UTC instant, or the reason
    "iso8601": [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10)),
        ("2026-03-01T10:00:00.250Z", datetime(2026, 3, 1, 10, 0, 0, 250000)),
        ("2026-03-01T10:00:00.123456789Z", datetime(2026, 3, 1, 10, 0, 0, 123456)),
        ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8)),
        ("2026-03-01T23:30:00-0030", "ts_outside_partition"),  # 2026-03-02 00:00 UTC
        ("2026-03-01T01:00:00.5+01:30", "ts_outside_partition"),  # 2026-02-28 23:30:00.5
        ("2026-03-01T10:00:00", "wrong_type:time"), ("2026-03-01 10:00:00Z", "wrong_type:time"),
        ("2026-03-01", "wrong_type:time"), ("2026-02-30T10:00:00Z", "wrong_type:time"),
        (1772359200, "wrong_type:time")],
    "epoch_s": [
        (1772359200, datetime(2026, 3, 1, 10)),
        (1772359200.123456, datetime(2026, 3, 1, 10, 0, 0, 123456)),
        (1772323200, datetime(2026, 3, 1)), (1772323199.999, "ts_outside_partition"),
        ("1772359200", "wrong_type:time"), ("NaN", "wrong_type:time"),
        (1e300, "wrong_type:time"), ({"s": 1}, "wrong_type:time")],
    "epoch_ms": [
        (1772359200123, datetime(2026, 3, 1, 10, 0, 0, 123000)),
        (1772359200123.5, datetime(2026, 3, 1, 10, 0, 0, 123500)),
        (True, "wrong_type:time"), ([1772359200123], "wrong_type:time")],
}


@pytest.mark.parametrize("fmt", sorted(TIMES))
def test_every_time_format_gives_the_utc_instant_or_a_reason(spark, tmp_path: Path,
                                                             fmt: str) -> None:
    cfg = _cfg(tmp_path, {**WITH_ID, "time": {"field": "time", "format": fmt}})
    cases = {f"t{i}": _line(eid=f"t{i}", time=value) for i, (value, _) in enumerate(TIMES[fmt])}
    got = _outcomes(spark, cfg, cases)
    for i, (value, expected) in enumerate(TIMES[fmt]):
        outcome = got[f"t{i}"]
        assert (outcome if isinstance(outcome, str) else outcome["ts"]) == expected, value


def test_nested_paths_typed_attributes_and_objects_become_the_clean_columns(
        spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, SHOP)
    assert cfg.events.columns == ("event_id", "customer_id", "ts", "action", "total", "items",
                                  "gift", "channel", "details")
    line = _line(order={"total": 12.5, "items": 2, "gift": True, "sku": "A-1"})
    (row,), quarantine, _ = _parse(spark, cfg, [line])
    assert quarantine == []
    assert (row["customer_id"], row["ts"], row["action"], row["total"], row["items"],
            row["gift"], row["channel"]) == ("c1", datetime(2026, 3, 1, 12), "order", 12.5, 2,
                                             True, "web")
    assert json.loads(row["details"]) == {"gift": True, "items": 2, "sku": "A-1", "total": 12.5}


def test_missing_optional_values_are_null_and_a_missing_object_too(spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, SHOP)
    (row,), quarantine, _ = _parse(spark, cfg, [_line(order=KeyError)])
    assert quarantine == []
    assert (row["total"], row["items"], row["gift"], row["details"]) == (None, None, None, None)


def test_derived_ids_are_stable_across_reruns_and_collapse_true_duplicates(
        spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, SHOP)
    first = _line()
    reordered = json.dumps(dict(reversed(list(json.loads(first).items()))),
                           separators=(" , ", " : "))
    other = _line(order__items=3)
    clean, quarantine, duplicates = _parse(spark, cfg, [first, reordered, other, first])
    again, _, _ = _parse(spark, cfg, [other, first])
    assert quarantine == []
    assert len(clean) == 2 and len(duplicates) == 2  # same JSON content, any key order
    assert {r["event_id"] for r in clean} == {r["event_id"] for r in again}
    assert all(len(r["event_id"]) == 64 for r in clean)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"customer__id": {"v": "c1"}}, "wrong_type:customer.id"),
    ({"customer__id": ["c1"]}, "wrong_type:customer.id"),
    ({"customer": "c1"}, "wrong_type:customer"),
    ({"order__total": "12.50"}, "wrong_type:order.total"),
    ({"order__items": 2.5}, "wrong_type:order.items"),
    ({"order__gift": "yes"}, "wrong_type:order.gift"),
    ({"meta__channel": {"name": "web"}}, "wrong_type:meta.channel"),
    ({"action": ["order"]}, "wrong_type:action"),
    ({"order": "12.50 EUR"}, "wrong_type:order"),
    ({"customer__id": KeyError}, "missing_field:customer.id"),
    ({"customer__id": None}, "missing_field:customer.id"),
    ({"meta__channel": KeyError}, "missing_field:meta.channel"),
    ({"action": "login"}, "unknown_event_type"),
    ({"order__total": -1.0}, "invalid_value:total"),
    ({"order__total": "NaN"}, "invalid_value:total"),
    ({"order__items": 0}, "invalid_value:items"),
    ({"meta__channel": "phone"}, "invalid_value:channel"),
    ({"order__total": 1e300}, "invalid_value:total"),  # beyond the default bound
    ({"order__total": "Infinity"}, "invalid_value:total"),
    ({"order__items": 2**63 - 1}, "invalid_value:items"),
    ({"order__items": 2**63}, "invalid_value:items"),  # no long holds it
    ({"customer__id": "c\ud800"}, "invalid_utf8:customer.id"),  # decoded as "c?"
    ({"customer__id": "c\ufffd"}, "invalid_utf8:customer.id"),
]


def test_each_bad_value_is_quarantined_with_its_reason_never_coerced(spark,
                                                                     tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, WITH_ID)
    got = _outcomes(spark, cfg, {f"b{i}": _line(eid=f"b{i}", **change)
                                 for i, (change, _) in enumerate(BAD)})
    assert {f"b{i}": got[f"b{i}"] for i in range(len(BAD))} == {
        f"b{i}": reason for i, (_, reason) in enumerate(BAD)}


NUMBERS = {**WITH_ID, "attributes": {"score": {"field": "order.score", "type": "double"},
                                     "count": {"field": "order.count", "type": "long"}}}
# (attribute, JSON value) -> the clean value, or the reason; no rules declared
DEFAULTS: list[tuple[str, Any, Any]] = [
    ("score", 1e15, 1e15), ("score", -1e15, -1e15), ("score", 1.0000001e15, "invalid_value:score"),
    ("score", "NaN", "invalid_value:score"), ("score", "-Infinity", "invalid_value:score"),
    ("score", float("inf"), "invalid_value:score"),  # json.dumps writes a bare Infinity
    ("count", 10**15, 10**15), ("count", -(10**15) - 1, "invalid_value:count"),
    ("count", -(2**63), "invalid_value:count"), ("count", 2**64, "invalid_value:count"),
    ("count", 10**40, "wrong_type:order.count"),  # beyond 38 digits JSON reads a double
]


def test_numbers_no_feature_cast_can_hold_are_invalid_without_any_rule(
        spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, NUMBERS)
    lines = {f"n{i}": _line(eid=f"n{i}", order={name: value})
             for i, (name, value, _) in enumerate(DEFAULTS)}
    got = _outcomes(spark, cfg, lines)
    assert {f"n{i}": got[f"n{i}"] if isinstance(got[f"n{i}"], str) else got[f"n{i}"][name]
            for i, (name, _, _) in enumerate(DEFAULTS)} == {
        f"n{i}": expected for i, (_, _, expected) in enumerate(DEFAULTS)}


def test_declared_bounds_and_finite_false_let_big_and_non_finite_numbers_through(
        spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, {**NUMBERS, "attributes": {
        "score": {"field": "order.score", "type": "double", "finite": False,
                  "min": float("-inf"), "max": float("inf")},
        "count": {"field": "order.count", "type": "long", "max": 2**63}}})
    got = _outcomes(spark, cfg, {"big": _line(eid="big", order={"score": 1e300,
                                                                "count": 2**63 - 1}),
                                 "nan": _line(eid="nan", order={"score": "NaN"}),
                                 "inf": _line(eid="inf", order={"score": "-Infinity"})})
    assert (got["big"]["score"], got["big"]["count"]) == (1e300, 2**63 - 1)
    assert math.isnan(got["nan"]["score"]) and got["inf"]["score"] == float("-inf")


def test_ids_that_differ_only_in_bytes_that_are_not_utf8_are_quarantined_not_merged(
        spark, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    cfg = _cfg(tmp_path, WITH_ID)
    lines = [_line(eid="e@").encode().replace(b'"e@"', b'"e' + bad + b'"')
             for bad in (b"\xff", b"\xfe")]
    lines += [_line(eid="ok", customer__id="c2").encode().replace(b'"c2"', b'"c\xff"'),
              _line(eid="fine", order__gift=True).encode().replace(b"true", b'true,"x":"\xff"')]
    df = spark.createDataFrame([(bytearray(b),) for b in lines], "raw binary").select(
        F.col("raw").cast("string").alias("value"))
    clean, quarantine, duplicates = extract.parse_events(df, DAY, cfg.events)
    assert sorted(r["reason"] for r in quarantine.collect()) == [
        "invalid_utf8:customer.id", "invalid_utf8:eid", "invalid_utf8:eid"]
    assert duplicates.count() == 0
    assert [r["event_id"] for r in clean.collect()] == ["fine"]  # bad bytes elsewhere: kept


def test_derived_ids_quarantine_lines_without_a_canonical_form_and_hash_bad_bytes_apart(
        spark, tmp_path: Path) -> None:
    from pyspark.sql import functions as F

    cfg = _cfg(tmp_path, SHOP)
    repeated_key = _line().replace('{"customer"', '{"action":"view","customer"')
    lone = _line(order__note="\ud800")
    bad = [_line(order__note="x").encode().replace(b'"x"', b'"\xff"'),
           _line(order__note="x").encode().replace(b'"x"', b'"\xfe"')]
    df = spark.createDataFrame(
        [(bytearray(b),) for b in [repeated_key.encode(), lone.encode(), *bad]], "raw binary"
    ).select(F.col("raw").cast("string").alias("value"))
    clean, quarantine, duplicates = extract.parse_events(df, DAY, cfg.events)
    assert sorted(r["reason"] for r in quarantine.collect()) == ["malformed_json"] * 2
    assert duplicates.count() == 0 and clean.select("event_id").distinct().count() == 2


def test_a_number_for_a_text_field_is_its_text(spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, SHOP)
    (row,), _, _ = _parse(spark, cfg, [_line(customer__id=1042)])
    assert row["customer_id"] == "1042"


def test_extract_of_the_shop_log_writes_the_mapped_columns_and_counts(
        spark, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, SHOP)
    lake = Lake(cfg.lake_root)
    raw = Path(lake.raw_events(DAY))
    raw.mkdir(parents=True)
    lines = [_line(), _line(), _line(order__items=5), _line(action="login"), "{oops"]
    (raw / "orders.jsonl").write_text("\n".join(lines) + "\n")
    result = extract.run(cfg, DAY, spark)
    (day,) = result.days
    assert (day.read, day.kept, day.duplicates, day.quarantined) == (5, 2, 1, 2)
    assert day.by_reason == {"malformed_json": 1, "unknown_event_type": 1}
    written = spark.read.parquet(lake.events(DAY))
    assert tuple(written.columns) == cfg.events.columns
    assert sorted(r["items"] for r in written.collect()) == [2, 5]


@pytest.mark.parametrize(("events", "message"), [
    ({"key": {"column": "customer id"}}, "events.key.column"),
    ({"key": {"field": "customer..id"}}, "events.key.field"),
    ({"attributes": {"ts": {}}}, "repeated: ['ts']"),
    ({"attributes": {"a": {"field": "order"}, "b": {"field": "order.total"}}},
     "field 'order' cannot be a value and hold 'order.total'"),
    ({"attributes": {"n": {"type": "long", "values": ["1"]}}}, "values apply to string"),
    ({"attributes": {"n": {"type": "string", "min": 0}}}, "min/max apply to long and double"),
    ({"attributes": {"n": {"finite": True}}}, "finite applies to double attributes only"),
    ({"attributes": {"n": {"type": "long", "min": 2e15}}},
     "min 2e+15 is above max 1e+15 (the default: give max)"),
    ({"attributes": {"n": {"type": "double", "min": 1, "max": 0}}}, "min 1 is above max 0"),
    ({"attributes": {"n": {"required": ["order"]}}}, "the mapping has no kind"),
    ({"kind": {"values": ["order"]}, "attributes": {"n": {"required": ["refund"]}}},
     "required for kinds ['refund'] that are not in kind.values"),
    ({"attributes": {"n": {"required": []}}}, "a non-empty list of kinds"),
    ({"time": {"format": "epoch_us"}}, "events.time.format"),
])
def test_a_bad_mapping_fails_at_load_naming_the_field(tmp_path: Path, events: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ConfigError, match="config error at events") as info:
        _cfg(tmp_path, events)
    assert message in str(info.value)


def test_a_changed_mapping_extracts_the_lookback_again_and_features_name_older_days(
        spark, tmp_path: Path) -> None:
    """Clean events are as the mapping makes them: days in the lookback that an earlier
    mapping extracted are extracted again; older ones stop the features step, named."""
    before = _cfg(tmp_path, SHOP)
    lake = Lake(before.lake_root)
    days = [date(2026, 2, 27), date(2026, 2, 28), DAY]
    for back, day in enumerate(reversed(days)):
        raw = Path(lake.raw_events(day))
        raw.mkdir(parents=True)
        (raw / "orders.jsonl").write_text(_line(time=T0 - back * 86_400, order__coupon="X1"))
    assert [d.day for d in extract.run(before, DAY, spark).days] == days
    after = before.with_overrides({"events.attributes.coupon": {"field": "order.coupon"}})

    assert [d.day for d in extract.run(after, DAY, spark).days] == days  # all of them again
    for day in days:
        assert [r["coupon"] for r in spark.read.parquet(lake.events(day)).collect()] == ["X1"]
    assert [d.day for d in extract.run(after, DAY, spark).days] == [DAY]  # up to date

    extract.run(before.with_overrides({"extract.lookback_days": 0}), DAY, spark)
    with pytest.raises(features.MappingChangedError) as info:
        features.run(before, DAY, ("inference",), spark=spark)
    assert str(info.value).startswith(
        "clean events of 2 day(s) (2026-02-27 to 2026-02-28) under ")


def test_raw_logs_outside_the_lake_are_read_where_the_config_says(spark, tmp_path: Path) -> None:
    logs = tmp_path / "their-logs"  # a folder of dt=YYYY-MM-DD/ days, not under the lake
    (logs / f"dt={DAY}").mkdir(parents=True)
    (logs / f"dt={DAY}" / "part-0.jsonl").write_text(
        "\n".join(_line(customer__id=f"c{i}", time=T0 + i) for i in range(5)) + "\n")
    cfg = _cfg(tmp_path, SHOP).with_overrides(
        {"stores.raw_events": str(logs), "extract.lookback_days": 0})
    assert cfg.lake.raw_events(DAY) == f"{logs}/dt={DAY}"
    result = extract.run(cfg, DAY, spark=spark)
    assert (result.read, result.kept) == (5, 5)
    assert spark.read.parquet(cfg.lake.events(DAY)).count() == 5
    assert not Path(cfg.lake_root, "raw").exists()
