"""One hostile line of each kind in an otherwise clean churn day: each is quarantined with its
reason, the day passes extract, the events suite passes on what was kept, and a features run
over a window holding the day succeeds (real Spark, real Great Expectations)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from precast.config import Config, load_config
from precast.lake import Lake, manifest_path, read_json
from precast.steps import extract, features
from precast.steps import validate as v
from tests.helpers import CHURN, CHURN_LOGS

START = date(2026, 1, 1)
DAYS = [START + timedelta(days=i) for i in range(3)]
HOSTILE_DAY = DAYS[1]
LINE = ('{"event_id":"h-%s","user_id":"%s","ts":"' + HOSTILE_DAY.isoformat() + 'T12:00:00Z",'
        '"event_type":"purchase","properties":{"plan":"%s","device":"tv","country":"US",'
        '"amount":%s}}')


def _hostile(name: str, user: str = "u000001", plan: str = "basic", amount: str = "9.99"
             ) -> bytes:
    return (LINE % (name, user, plan, amount)).encode("utf-8", "surrogateescape")


# name -> (the raw line's bytes, the reason it must be quarantined with)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "unknown-plan": (_hostile("unknown-plan", plan="gold"), "invalid_value:plan"),
    "no-properties": (b'{"event_id":"h-no-properties","user_id":"u000001","ts":"'
                      + HOSTILE_DAY.isoformat().encode() + b'T12:00:00Z","event_type":"play"}',
                      "missing_field:properties.plan"),
    "no-amount": (_hostile("no-amount", amount="null"), "missing_field:properties.amount"),
    "negative": (_hostile("negative", amount="-5.0"), "invalid_value:amount"),
    "1e300": (_hostile("1e300", amount="1e300"), "invalid_value:amount"),
    "nan": (_hostile("nan", amount='"NaN"'), "invalid_value:amount"),
    "infinity": (_hostile("infinity", amount='"Infinity"'), "invalid_value:amount"),
    "2^63": (_hostile("2^63", amount=str(2**63)), "invalid_value:amount"),
    # two keys that differ only in bytes that are not UTF-8 (both decode as "u00000\ufffd")
    "utf8-ff": (_hostile("utf8-ff", user="u00000\udcff"), "invalid_utf8:user_id"),
    "utf8-fe": (_hostile("utf8-fe", user="u00000\udcfe"), "invalid_utf8:user_id"),
    # an escaped lone surrogate: Spark decodes it as "?", like any other lone surrogate
    "surrogate": (_hostile("surrogate", user="u00000\\ud800"), "invalid_utf8:user_id"),
}


@pytest.fixture(scope="module")
def hostile(spark, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Three generated churn days (no planted lines); the hostile lines are appended to the
    middle day's file; one extract run over all three at the default quarantine limit."""
    home = tmp_path_factory.mktemp("hostile") / "home"
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(home)})
    CHURN_LOGS.generate(cfg.lake_root, users=120, days=len(DAYS), seed=5, start_date=START)
    raw = Path(Lake(cfg.lake_root).raw_events(HOSTILE_DAY), "events.jsonl")
    raw.write_bytes(raw.read_bytes() + b"".join(line + b"\n" for line, _ in HOSTILE.values()))
    extract.run(cfg, DAYS[-1], spark)
    return cfg


def test_hostile_lines_are_the_quarantine_of_their_day_each_with_its_reason_and_bytes(
        spark, hostile: Config) -> None:
    from pyspark.sql import functions as F

    rows = spark.read.parquet(Lake(hostile.lake_root).quarantine(HOSTILE_DAY)).select(
        F.get_json_object("raw", "$.event_id").alias("id"), "reason", F.hex("raw").alias("hex")
    ).collect()
    assert {r["id"]: r["reason"] for r in rows} == {
        f"h-{name}": reason for name, (_, reason) in HOSTILE.items()}
    assert {r["id"]: r["hex"] for r in rows} == {  # kept whole, to the byte
        f"h-{name}": line.hex().upper() for name, (line, _) in HOSTILE.items()}


def test_a_day_with_hostile_lines_passes_extract_under_the_quarantine_limit(
        hostile: Config) -> None:
    day = read_json(manifest_path(Lake(hostile.lake_root).events(HOSTILE_DAY)))
    assert day is not None  # the clean day was written
    assert day["quarantined"] == len(HOSTILE)
    assert 0 < day["quarantine_rate"] <= hostile.extract.max_quarantine_rate
    assert day["kept"] == day["read"] - len(HOSTILE)


def test_the_events_suite_passes_on_what_extract_kept(spark, hostile: Config) -> None:
    assert v.run(hostile, "events", HOSTILE_DAY, spark=spark).success


def test_a_features_run_over_the_hostile_day_succeeds(spark, hostile: Config) -> None:
    result = features.run(hostile, DAYS[-1], ("inference",), spark=spark)
    (dataset,) = result.datasets
    assert dataset.rows > 0
