"""Features and labels from hand-written clean events: exact rows, split and versions."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from precast.config import Config
from precast.data import datasets
from precast.lake import Lake, exists, manifest_path, read_json, write_json
from precast.resources import UseCaseFileError
from precast.steps import features
from tests.helpers import CHURN

D = date(2026, 1, 20)
EVENTS = [  # (user, day, event_type, amount)
    ("u1", 1, "session_start", None), ("u1", 4, "purchase", 9.5), ("u1", 5, "session_start", None),
    ("u1", 6, "session_start", None), ("u1", 6, "page_view", None), ("u1", 10, "cancel", None),
    ("u2", 2, "session_start", None), ("u2", 12, "session_start", None),
    ("u2", 19, "session_start", None), ("u2", 20, "page_view", None),
    ("u3", 8, "session_start", None), ("u3", 12, "support_ticket", None),
    ("u3", 15, "cancel", None),
]
COLUMNS = ["user_id", "snapshot_date", "sessions_7d", "sessions_30d", "page_views_7d",
           "purchases_30d", "spend_30d", "support_tickets_30d", "active_days_7d",
           "active_days_30d", "days_since_last_event", "tenure_days", "plan"]


@pytest.fixture
def small_cfg(cfg: Config) -> Config:
    return cfg.with_overrides({"features.short_window_days": 3, "features.long_window_days": 7,
                               "features.label_horizon_days": 7,
                               "features.snapshot_interval_days": 7,
                               "features.train_snapshots": 1})


def write_events(spark, cfg: Config, events=EVENTS, fingerprint: str = "fp") -> None:
    rows = [(f"e{i}", user, datetime(2026, 1, day, 12, i % 60), kind,
             "basic" if user == "u1" else "free", "ios", "US", amount, date(2026, 1, day))
            for i, (user, day, kind, amount) in enumerate(events)]
    df = spark.createDataFrame(rows, "event_id string, user_id string, ts timestamp, "
                               "event_type string, plan string, device string, country string, "
                               "amount double, dt date")
    lake = Lake(cfg.lake_root)
    df.write.mode("overwrite").partitionBy("dt").parquet(lake.events())
    for day in {r[-1] for r in rows}:
        write_json(manifest_path(lake.events(day)), {"fingerprint": f"{fingerprint}{day}"})


def read(path: str) -> list[dict]:
    df = pd.read_parquet(path)[COLUMNS + (["label"] if "label" in pd.read_parquet(path) else [])]
    df["snapshot_date"] = df["snapshot_date"].astype(str)
    return df.sort_values("user_id").to_dict("records")


def test_snapshot_plan_has_no_label_leakage() -> None:
    cfg = Config()
    plan = features.snapshot_plan(date(2026, 3, 1), cfg.features)
    assert plan["test"] == (date(2026, 2, 15),)
    assert plan["inference"] == (date(2026, 3, 1),)
    assert plan["train"] == (date(2026, 1, 18), date(2026, 1, 25), date(2026, 2, 1))
    horizon = cfg.features.label_horizon_days
    assert all((plan["test"][0] - s).days >= horizon for s in plan["train"])


def test_features_and_labels_exact(spark, small_cfg: Config) -> None:
    write_events(spark, small_cfg)
    result = features.run(small_cfg, D, spark=spark)
    base = {"page_views_7d": 0, "purchases_30d": 0, "spend_30d": 0.0, "support_tickets_30d": 0}
    assert read(result.get("train").path) == [
        {**base, "user_id": "u1", "snapshot_date": "2026-01-06", "sessions_7d": 2,
         "sessions_30d": 3, "page_views_7d": 1, "purchases_30d": 1, "spend_30d": 9.5,
         "active_days_7d": 3, "active_days_30d": 4, "days_since_last_event": 0,
         "tenure_days": 5, "plan": "basic", "label": 1},
        {**base, "user_id": "u2", "snapshot_date": "2026-01-06", "sessions_7d": 0,
         "sessions_30d": 1, "active_days_7d": 0, "active_days_30d": 1,
         "days_since_last_event": 4, "tenure_days": 4, "plan": "free", "label": 0},
    ]
    assert read(result.get("test").path) == [  # u1 cancelled before the snapshot: gone
        {**base, "user_id": "u2", "snapshot_date": "2026-01-13", "sessions_7d": 1,
         "sessions_30d": 1, "active_days_7d": 1, "active_days_30d": 1,
         "days_since_last_event": 1, "tenure_days": 11, "plan": "free", "label": 0},
        {**base, "user_id": "u3", "snapshot_date": "2026-01-13", "sessions_7d": 0,
         "sessions_30d": 1, "support_tickets_30d": 1, "active_days_7d": 1,
         "active_days_30d": 2, "days_since_last_event": 1, "tenure_days": 5, "plan": "free",
         "label": 1},
    ]
    assert read(result.get("inference").path) == [
        {**base, "user_id": "u2", "snapshot_date": "2026-01-20", "sessions_7d": 1,
         "sessions_30d": 1, "page_views_7d": 1, "active_days_7d": 2, "active_days_30d": 2,
         "days_since_last_event": 0, "tenure_days": 18, "plan": "free"},
    ]
    assert result.get("test").label_rate == 0.5
    manifest = read_json(manifest_path(result.get("train").path))
    assert manifest["row_count"] == 2 and manifest["snapshots"] == ["2026-01-06"]


def test_data_version_is_stable_and_tracks_inputs(spark, small_cfg: Config) -> None:
    write_events(spark, small_cfg)
    first = features.run(small_cfg, D, spark=spark)
    again = features.run(small_cfg, D, spark=spark)
    assert [d.data_version for d in first.datasets] == [d.data_version for d in again.datasets]
    write_events(spark, small_cfg, fingerprint="changed")
    changed = features.run(small_cfg, D, spark=spark)
    assert changed.get("train").data_version != first.get("train").data_version
    other_sql_cfg = small_cfg.with_overrides({"features.short_window_days": 2})
    assert features.run(other_sql_cfg, D, spark=spark).get("inference").data_version != \
        first.get("inference").data_version


def test_a_predict_run_keeps_the_inference_dataset_its_training_run_wrote(
        spark, small_cfg: Config) -> None:
    """inference_features after the day's features step: the same data version, so the
    dataset is kept as written (no Spark job); a changed input builds it again."""
    from precast import pipeline

    write_events(spark, small_cfg)
    built = features.run(small_cfg, D, spark=spark).get("inference")
    files = {p: p.stat().st_mtime_ns for p in Path(built.path).glob("*.parquet")}
    rows = read(built.path)
    kept = pipeline.run_step(small_cfg, "inference_features", D).get("inference")
    assert kept == built
    assert {p: p.stat().st_mtime_ns for p in Path(built.path).glob("*.parquet")} == files != {}
    write_events(spark, small_cfg, fingerprint="changed")  # extract ran again: new content
    rebuilt = pipeline.run_step(small_cfg, "inference_features", D).get("inference")
    assert rebuilt.data_version != built.data_version
    assert read_json(manifest_path(built.path))["data_version"] == rebuilt.data_version
    assert {p: p.stat().st_mtime_ns for p in Path(built.path).glob("*.parquet")} != files
    assert rebuilt.rows == built.rows and read(rebuilt.path) == rows  # the same events


def test_missing_history_is_a_clear_error(spark, small_cfg: Config) -> None:
    write_events(spark, small_cfg, [e for e in EVENTS if e[1] != 20])
    with pytest.raises(features.NotEnoughHistoryError,
                       match="end at 2026-01-19 but 2026-01-20 is needed.*run extract first"):
        features.run(small_cfg, D, spark=spark)


def test_feature_sql_without_the_configured_key_fails_naming_it_and_the_file(
        spark, small_cfg: Config) -> None:
    write_events(spark, small_cfg)
    cfg = small_cfg.with_overrides({"events.key.column": "customer_id"})
    with pytest.raises(features.SqlColumnsError) as info:
        features.run(cfg, D, ("inference",), spark=spark)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message == "events.key.column names 'customer_id', which features.sql does not return"


def test_label_sql_without_the_label_fails_naming_the_file_and_a_missing_file_names_the_field(
        spark, small_cfg: Config, tmp_path: Path) -> None:
    write_events(spark, small_cfg)
    (tmp_path / "features.sql").write_text((CHURN.parent / "features.sql").read_text())
    (tmp_path / "outcome.sql").write_text(
        (CHURN.parent / "labels.sql").read_text().replace(" AS label", " AS churned"))
    cfg = small_cfg.with_overrides({"folder": str(tmp_path), "features.labels_sql": "outcome.sql"})
    with pytest.raises(features.SqlColumnsError) as info:
        features.run(cfg, D, ("test",), spark=spark)
    assert str(info.value) == "outcome.sql returns no column 'label' (the row key and the label)"
    gone = cfg.with_overrides({"features.labels_sql": "labels.sql"})
    with pytest.raises(UseCaseFileError, match=rf"^features.labels_sql: no SQL file {tmp_path}/"
                                               "labels.sql \\(use case churn"):
        features.run(gone, D, spark=spark)


def test_config_naming_columns_the_sql_lacks_fails_before_any_dataset_is_written(
        spark, small_cfg: Config) -> None:
    write_events(spark, small_cfg)
    cfg = small_cfg.with_overrides({"gate.slices": ["country", "region"],
                                    "train.monotone": {"sessions_7d": -1, "logins_7d": -1}})
    with pytest.raises(features.SqlColumnsError) as info:
        features.run(cfg, D, spark=spark)
    assert str(info.value) == (
        "train.monotone names 'logins_7d', which features.sql does not return; "
        "gate.slices names 'region', which features.sql does not return")
    assert not any(exists(Lake(cfg.lake_root).dataset(kind, D))
                   for kind in datasets.KINDS)


def test_every_dataset_manifest_names_its_key_columns(spark, small_cfg: Config) -> None:
    from precast.data import datasets as data_datasets

    write_events(spark, small_cfg)
    result = features.run(small_cfg, D, spark=spark)
    for info in result.datasets:
        df, manifest = data_datasets.load_dataset(info.path)
        assert manifest["key_columns"] == ["user_id", "snapshot_date"]
        assert list(df["user_id"]) == sorted(df["user_id"])


def test_a_train_snapshot_is_read_from_an_earlier_test_dataset_of_the_same_days(
        spark, small_cfg: Config, caplog: pytest.LogCaptureFixture) -> None:
    """Run D's train snapshot (D - 14) is run D - 7's test snapshot: read back when run D - 7
    read the same days, computed again when a day it read has changed since."""
    write_events(spark, small_cfg)
    fresh = read(features.run(small_cfg, D, ("train",), spark=spark).get("train").path)
    earlier = date(2026, 1, 13)
    features.run(small_cfg, earlier, ("test",), spark=spark)
    reused = "snapshot 2026-01-06 read from the test dataset of 2026-01-13"

    with caplog.at_level("INFO", logger="precast.steps.features"):
        result = features.run(small_cfg, D, ("train",), spark=spark)
    assert reused in caplog.text
    assert read(result.get("train").path) == fresh

    caplog.clear()
    write_events(spark, small_cfg, [*EVENTS, ("u2", 3, "page_view", None)], fingerprint="new")
    with caplog.at_level("INFO", logger="precast.steps.features"):
        result = features.run(small_cfg, D, ("train",), spark=spark)
    assert reused not in caplog.text  # the test dataset of 2026-01-13 read other days
    (u2,) = [row for row in read(result.get("train").path) if row["user_id"] == "u2"]
    assert u2["active_days_30d"] == 2  # the new event of day 3 counts
