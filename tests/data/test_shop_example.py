"""The shop example (examples/shop) on real Spark and XGBoost: its generator, its mapping
through extract, its feature and label SQL, its suites, and a spend signal a model learns."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest

from precast import validation
from precast.config import Config, load_config
from precast.data import datasets
from precast.lake import Lake
from precast.model import training
from precast.model.artifact import predict
from precast.steps import extract, features, validate
from precast.use_case import generator_module
from tests.helpers import REPO

EXAMPLE = REPO / "examples" / "shop"
START = date(2026, 1, 1)
DAYS = 70
GEN = {"users": 2000, "days": DAYS, "seed": 5, "start_date": START}
CLEAN_SCHEMA = [
    ("event_id", "string"), ("customer_id", "string"), ("ts", "timestamp"),
    ("event_type", "string"), ("order_total", "double"), ("items", "bigint"),
    ("category", "string"), ("discount", "boolean"), ("device", "string"),
    ("channel", "string"), ("dt", "date"),
]
FEATURE_SCHEMA = [
    ("customer_id", "string"), ("snapshot_date", "date"), ("visits_7d", "bigint"),
    ("visits_30d", "bigint"), ("searches_30d", "bigint"), ("cart_adds_7d", "bigint"),
    ("cart_adds_30d", "bigint"), ("orders_7d", "bigint"), ("orders_30d", "bigint"),
    ("items_30d", "bigint"), ("spend_7d", "double"), ("spend_30d", "double"),
    ("discounted_orders_30d", "bigint"), ("returns_30d", "bigint"), ("returned_30d", "double"),
    ("reviews_30d", "bigint"), ("active_days_30d", "bigint"),
    ("days_since_last_event", "bigint"), ("days_since_last_order", "bigint"),
    ("tenure_days", "bigint"), ("orders_to_date", "bigint"), ("avg_order_value", "double"),
    ("favourite_category", "string"), ("last_device", "string"), ("last_channel", "string"),
]


def _generator() -> ModuleType:
    """examples/shop/generate.py, loaded as precast loads what `demo.generator` names."""
    module: ModuleType = generator_module(load_config(EXAMPLE / "precast.yaml", environ={}))
    return module


def _cfg(home: Path) -> Config:
    cfg = load_config(EXAMPLE / "precast.yaml", environ={"PRECAST_HOME": str(home)})
    return cfg.with_overrides({"extract.max_quarantine_rate": 0.5})


def _raw_lines(lake: Lake, day: date) -> list[str]:
    return Path(lake.raw_events(day), "events.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def shop() -> ModuleType:
    return _generator()


@pytest.fixture(scope="module")
def extracted(spark, shop, tmp_path_factory) -> tuple[Config, extract.ExtractResult]:
    """2,000 customers over 70 days with 2% planted bad lines, extracted in one run."""
    cfg = _cfg(tmp_path_factory.mktemp("shop") / "home")
    shop.generate(cfg.lake_root, corrupt_fraction=0.02, **GEN)
    return cfg, extract.run(cfg, START + timedelta(days=DAYS - 1), spark)


@pytest.fixture(scope="module")
def events(spark, extracted):
    """The clean events of the generated world, cached for the SQL tests."""
    cfg, _ = extracted
    clean = spark.read.parquet(Lake(cfg.lake_root).events()).persist()
    yield clean
    clean.unpersist()


def test_same_seed_writes_the_same_bytes_and_another_seed_other_bytes(shop, tmp_path) -> None:
    def written(folder: str, seed: int) -> dict[str, bytes]:
        shop.generate(str(tmp_path / folder), users=60, days=4, seed=seed, start_date=START,
                      corrupt_fraction=0.05)
        return {str(p.relative_to(tmp_path / folder)): p.read_bytes()
                for p in sorted((tmp_path / folder).rglob("*")) if p.is_file()}

    first, again, other = written("a", 3), written("b", 3), written("c", 4)
    assert first == again
    assert first.keys() == other.keys() and first != other
    assert len(first) == 5  # four days and _planted.json


def test_extract_quarantines_exactly_the_planted_lines_by_reason(extracted) -> None:
    cfg, result = extracted
    planted = json.loads(Path(cfg.lake_root, "raw", "events", "_planted.json").read_text())
    for counts in result.days:
        day = counts.day.isoformat()
        expected = {reason: n for reason, n in planted["days"][day].items() if n}
        got = {**counts.by_reason, "duplicate_event_id": counts.duplicates}
        assert {k: v for k, v in got.items() if v} == expected, day
        assert counts.read == planted["lines"][day]
    wrong_types = {r for day in result.days for r in day.by_reason if r.startswith("wrong_type")}
    assert wrong_types == {"wrong_type:order.total", "wrong_type:order.items", "wrong_type:at",
                           "wrong_type:session"}


def test_extract_keeps_every_good_line_at_its_utc_instant(spark, extracted, shop,
                                                          tmp_path) -> None:
    cfg, result = extracted
    # Oracle: the same seed without corruption; planted lines replace good ones or add copies.
    shop.generate(str(tmp_path), **GEN)
    good = set()
    for offset in range(DAYS):
        day = START + timedelta(days=offset)
        for line in _raw_lines(Lake(str(tmp_path)), day):
            e = json.loads(line)
            assert datetime.fromtimestamp(e["at"], UTC).date() == day  # `at` is in its file's day
            order = e.get("order", {})
            good.add((e["customer"], e["at"], e["type"], order.get("total"), order.get("items"),
                      order.get("category"), order.get("discount"), e["session"]["device"],
                      e["session"]["channel"], day))
    clean = spark.read.parquet(Lake(cfg.lake_root).events())
    rows = clean.selectExpr(  # ts as epoch seconds: the instant, whatever this process's zone
        "customer_id", "CAST(ts AS BIGINT) AS at", "event_type", "order_total", "items",
        "category", "discount", "device", "channel", "dt").collect()
    kept = {tuple(r) for r in rows}
    assert len(kept) == len(rows) == result.kept
    assert kept <= good
    assert len(good) - len(kept) == result.quarantined  # each bad line took a good one's place
    assert clean.where("to_date(ts) != dt").count() == 0  # the UTC day is the partition


def test_derived_event_ids_are_stable_across_extracts(spark, extracted, tmp_path) -> None:
    cfg, _ = extracted
    other = _cfg(tmp_path / "home")
    days = [START + timedelta(days=i) for i in (10, 11)]
    for day in days:  # the same raw days, extracted in another lake by another run
        shutil.copytree(Lake(cfg.lake_root).raw_events(day), Lake(other.lake_root).raw_events(day))
    extract.run(other, days[-1], spark)

    def ids(c: Config) -> list[tuple[str, str, Any]]:
        clean = spark.read.parquet(Lake(c.lake_root).events())
        rows = clean.where(clean.dt.isin(days)).select("event_id", "customer_id", "ts").collect()
        return sorted((r["event_id"], r["customer_id"], r["ts"]) for r in rows)

    first, again = ids(cfg), ids(other)
    assert first == again and len(first) > 100
    assert all(len(event_id) == 64 for event_id, _, _ in first)


def test_clean_events_have_the_shop_columns(spark, extracted) -> None:
    cfg, _ = extracted
    clean = spark.read.parquet(Lake(cfg.lake_root).events())
    assert [(f.name, f.dataType.simpleString()) for f in clean.schema.fields] == CLEAN_SCHEMA
    assert tuple(clean.columns[:-1]) == cfg.events.columns


def _sql(cfg: Config, which: str) -> str:
    return (EXAMPLE / getattr(cfg.features, which)).read_text()


def _labelled(spark, cfg: Config, events, snapshot: date):
    """One snapshot's features with their labels, by the shop's SQL over `events` registered
    as the view `events` (as steps.features runs it)."""
    events.createOrReplaceTempView("events")
    feats = spark.sql(_sql(cfg, "features_sql"),
                      args=features.feature_args(snapshot, cfg.features))
    feats.createOrReplaceTempView("entities")
    labels = spark.sql(_sql(cfg, "labels_sql"), args=features.label_args(snapshot, cfg.features))
    return feats, feats.join(labels, ["customer_id", "snapshot_date"], "inner")


def _handwritten_events(spark):
    """c1 and c3 are active in the 30 days to 2026-03-31; c2 only before them."""
    rows = [  # customer, day, hh:mm, type, total, items, category, discount, device, channel
        ("c1", "02-15", "10:00", "visit", None, None, None, None, "mobile", "email"),
        ("c1", "02-15", "10:05", "order", 100.0, 2, "electronics", False, "mobile", "email"),
        ("c1", "03-10", "09:00", "visit", None, None, None, None, "desktop", "search"),
        ("c1", "03-10", "09:01", "cart_add", None, None, None, None, "desktop", "search"),
        ("c1", "03-10", "09:02", "order", 20.1, 1, "books", True, "desktop", "search"),
        ("c1", "03-12", "18:00", "return", 20.1, 1, "books", True, "desktop", "direct"),
        ("c1", "03-27", "20:00", "visit", None, None, None, None, "tablet", "direct"),
        ("c1", "03-27", "20:10", "order", 30.2, 3, "books", False, "tablet", "direct"),
        ("c1", "03-28", "12:00", "search", None, None, None, None, "mobile", "ads"),
        ("c1", "04-05", "08:00", "order", 50.05, 1, "home", False, "mobile", "ads"),
        ("c1", "04-30", "23:59", "order", 10.0, 1, "home", False, "mobile", "ads"),
        ("c1", "05-01", "00:00", "order", 99.0, 1, "home", False, "mobile", "ads"),
        ("c2", "02-01", "10:00", "order", 5.0, 1, "grocery", False, "mobile", "direct"),
        ("c3", "03-02", "07:30", "visit", None, None, None, None, "desktop", "direct"),
    ]
    return spark.createDataFrame(
        [(f"e{i}", c, datetime.fromisoformat(f"2026-{d}T{t}:00"), kind, total, items, cat, off,
          device, channel, date.fromisoformat(f"2026-{d}"))
         for i, (c, d, t, kind, total, items, cat, off, device, channel) in enumerate(rows)],
        ", ".join(f"{name} {kind}" for name, kind in CLEAN_SCHEMA))


def test_feature_and_label_sql_on_handwritten_events(spark, tmp_path) -> None:
    cfg = _cfg(tmp_path / "home")
    feats, labelled = _labelled(spark, cfg, _handwritten_events(spark), date(2026, 3, 31))
    assert [(f.name, f.dataType.simpleString()) for f in feats.schema.fields] == FEATURE_SCHEMA
    rows = {r["customer_id"]: r.asDict() for r in labelled.collect()}
    assert sorted(rows) == ["c1", "c3"]
    assert rows["c1"] == {
        "customer_id": "c1", "snapshot_date": date(2026, 3, 31),
        "visits_7d": 1, "visits_30d": 2, "searches_30d": 1, "cart_adds_7d": 0,
        "cart_adds_30d": 1, "orders_7d": 1, "orders_30d": 2, "items_30d": 4,
        "spend_7d": 30.2, "spend_30d": 50.3, "discounted_orders_30d": 1, "returns_30d": 1,
        "returned_30d": 20.1, "reviews_30d": 0, "active_days_30d": 4,
        "days_since_last_event": 3, "days_since_last_order": 4, "tenure_days": 44,
        "orders_to_date": 3, "avg_order_value": 150.3 / 3,
        "favourite_category": "electronics", "last_device": "mobile", "last_channel": "ads",
        "label": 60.05,  # the orders of April; not the one on May 1st
    }
    c3 = rows["c3"]
    assert (c3["visits_30d"], c3["days_since_last_event"], c3["tenure_days"],
            c3["orders_to_date"], c3["label"]) == (1, 29, 29, 0, 0.0)
    assert (c3["days_since_last_order"], c3["avg_order_value"],
            c3["favourite_category"]) == (None, None, None)


def test_feature_sql_on_generated_events_matches_the_raw_counts(spark, extracted, events
                                                                ) -> None:
    cfg, _ = extracted
    snapshot = START + timedelta(days=38)
    feats, labelled = _labelled(spark, cfg, events, snapshot)
    assert [(f.name, f.dataType.simpleString()) for f in feats.schema.fields] == FEATURE_SCHEMA
    window = events.where((events.dt > snapshot - timedelta(days=30)) & (events.dt <= snapshot))
    assert feats.count() == labelled.count() == window.select("customer_id").distinct().count()
    # one busy customer, counted again in Python from the clean rows
    top = labelled.orderBy(labelled.label.desc(), "customer_id").first()
    assert top is not None
    mine = events.where(events.customer_id == top["customer_id"]).collect()
    orders = [r for r in mine if r["event_type"] == "order"]
    in_window = [r for r in orders if snapshot - timedelta(days=30) < r["dt"] <= snapshot]
    future = [r for r in orders if snapshot < r["dt"] <= snapshot + timedelta(days=30)]
    assert top["orders_30d"] == len(in_window)
    assert top["spend_30d"] == pytest.approx(sum(r["order_total"] for r in in_window), abs=1e-9)
    assert top["label"] == pytest.approx(sum(r["order_total"] for r in future), abs=1e-9)
    assert top["days_since_last_event"] == (snapshot - max(
        r["dt"] for r in mine if r["dt"] <= snapshot)).days


def _half(df: pd.DataFrame, remainder: int) -> pd.DataFrame:
    """The customers whose number is even (0) or odd (1)."""
    return df[df["customer_id"].str[-1].astype(int) % 2 == remainder]


def test_a_model_learns_the_spend_better_than_the_mean(spark, extracted, events) -> None:
    """Train on one snapshot's even-numbered customers, test on the next week's odd ones."""
    cfg, _ = extracted
    train_day, test_day = START + timedelta(days=31), START + timedelta(days=38)
    train_df = _half(_labelled(spark, cfg, events, train_day)[1].toPandas(), 0)
    test_df = _half(_labelled(spark, cfg, events, test_day)[1].toPandas(), 1)
    keys = datasets.key_columns(cfg.events)
    spec = training.feature_spec(train_df, cfg.features.categorical, keys)
    fit, valid = training.split_validation(train_df, cfg.train.validation_fraction, 42, keys[0])
    booster = training.fit(fit, valid, spec, cfg.with_overrides({"train.nthread": 2}).train, "cpu")
    score = predict(booster, test_df, spec)
    label = test_df["label"].to_numpy()
    rmse = float(np.sqrt(np.mean((score - label) ** 2)))
    baseline = float(np.sqrt(np.mean((train_df["label"].mean() - label) ** 2)))
    assert (score >= 0).all()  # Tweedie's log link: never a negative spend
    assert rmse < 0.9 * baseline, (rmse, baseline)


def test_suites_resolve_against_the_shop_config(tmp_path) -> None:
    """Every expectation has a reason, its $config references exist in the shop's config, and
    Great Expectations accepts its type and arguments."""
    cfg = _cfg(tmp_path / "home")
    for name in validate.DATASETS:
        doc = json.loads((EXAMPLE / "expectations" / f"{name}.json").read_text())
        assert doc["name"] == name and len(doc["expectations"]) >= 10
        for entry in doc["expectations"]:
            assert entry["notes"].strip() and set(entry) <= {"type", "kwargs", "notes", "kinds"}
            kwargs = validation.resolve_config_refs(entry["kwargs"], cfg)
            spec = validation.ExpectationSpec(entry["type"], kwargs, entry["notes"])
            validation.to_expectation(spec, name)
