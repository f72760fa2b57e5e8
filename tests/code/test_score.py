"""Units of the score step: batch splitting, reasons, prediction rows, Beam options."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

from precast.engines.beam import pipeline_options, resolve_runner
from precast.model.artifact import FeatureMismatchError
from precast.steps.score import (
    ERRORS_SCHEMA,
    PREDICTIONS_SCHEMA,
    missing_reasons,
    prediction_table,
    rechunk,
    require_columns,
    scored_table,
    split_batch,
)

REQUIRED = ("tenure_days", "days_since_last_event")
DAY = date(2026, 3, 1)


def _batch() -> pa.Table:
    return pa.table({
        "user_id": ["u1", "u2", None, "u4", "u5"],
        "snapshot_date": [DAY] * 5,
        "tenure_days": [10, None, 3, None, 7],
        "days_since_last_event": [1, 2, 3, None, 0],
        "sessions_7d": [None, 1, 2, 3, 4],
    })


def test_missing_reasons_names_every_missing_required_feature() -> None:
    assert missing_reasons(_batch(), "user_id", REQUIRED) == [
        "",
        "missing_feature:tenure_days",
        "missing_entity_id",
        "missing_feature:tenure_days;missing_feature:days_since_last_event",
        "",
    ]


def test_missing_reasons_treats_nan_as_missing() -> None:
    table = pa.table({"user_id": ["a", "b"], "tenure_days": [1.0, float("nan")]})
    assert missing_reasons(table, "user_id", ["tenure_days"]) == ["", "missing_feature:tenure_days"]


def test_split_batch_keeps_every_row_once() -> None:
    scorable, errors = split_batch(_batch(), "user_id", REQUIRED)
    assert scorable["user_id"].to_pylist() == ["u1", "u5"]
    assert scorable.column_names == _batch().column_names
    assert errors.schema == ERRORS_SCHEMA
    assert errors.to_pylist() == [
        {"entity_id": "u2", "reason": "missing_feature:tenure_days"},
        {"entity_id": None, "reason": "missing_entity_id"},
        {"entity_id": "u4",
         "reason": "missing_feature:tenure_days;missing_feature:days_since_last_event"},
    ]


def test_split_batch_refuses_a_batch_without_a_required_column() -> None:
    with pytest.raises(FeatureMismatchError, match=r"\['days_since_last_event'\]"):
        split_batch(_batch().drop_columns(["days_since_last_event"]), "user_id", REQUIRED)


def test_require_columns_names_all_missing() -> None:
    require_columns(["a", "b"], ["a"], "x")
    with pytest.raises(FeatureMismatchError, match=r"frame is missing columns \['c', 'd'\]"):
        require_columns(["a", "b"], ["a", "c", "d"], "frame")


def test_rechunk_splits_without_losing_rows() -> None:
    table = pa.table({"x": list(range(10))})
    chunks = list(rechunk(table, 4))
    assert [c.num_rows for c in chunks] == [4, 4, 2]
    assert pa.concat_tables(chunks).equals(table)
    assert list(rechunk(table.slice(0, 0), 4)) == []


def test_prediction_table_has_the_contract_schema() -> None:
    scored = scored_table(_batch(), "user_id", np.array([0.1, 0.2, 0.3, 0.4, 0.5]))
    at = datetime(2026, 3, 2, 4, 5, 6, 789, tzinfo=UTC)
    out = prediction_table(scored, "churn", "3", "dv1", at)
    assert out.schema == PREDICTIONS_SCHEMA
    assert out.to_pylist()[0] == {
        "entity_id": "u1", "score": 0.1, "snapshot_date": DAY, "model_name": "churn",
        "model_version": "3", "data_version": "dv1", "scored_at": at,
    }
    assert out.num_rows == 5


@pytest.mark.parametrize(("name", "expected"), [
    ("DirectRunner", "FnApiRunner"), ("direct", "FnApiRunner"), ("FlinkRunner", "FlinkRunner"),
    ("PrismRunner", "PrismRunner"), ("BundleBasedDirectRunner", "BundleBasedDirectRunner"),
])
def test_resolve_runner_never_hands_out_the_prism_switching_runner(name, expected) -> None:
    assert resolve_runner(name) == expected


def test_pipeline_options_from_config_with_overrides(cfg) -> None:
    options = pipeline_options(cfg)
    assert options.view_as(StandardOptions).runner == "FnApiRunner"
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    extra = pipeline_options(cfg, direct_running_mode="multi_processing", direct_num_workers=2)
    assert extra.view_as(DirectOptions).direct_running_mode == "multi_processing"
    assert extra.view_as(DirectOptions).direct_num_workers == 2
    flink = pipeline_options(cfg.with_overrides({"engines.beam.runner": "FlinkRunner"}))
    assert flink.view_as(StandardOptions).runner == "FlinkRunner"
