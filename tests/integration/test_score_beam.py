"""Score on real Beam (FnApiRunner, in memory) with a real tiny XGBoost model."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xgboost as xgb
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from precast import lake
from precast.engines.beam import pipeline_options
from precast.lake import Lake
from precast.model import artifact
from precast.model.artifact import FeatureMismatchError, FeatureSpec
from precast.steps import score

DAY = date(2026, 3, 1)
AT = datetime(2026, 3, 2, 6, 0, 0, 123456, tzinfo=UTC)
COUNTS = ("sessions_7d", "sessions_30d", "page_views_7d", "plays_7d", "plays_30d",
          "purchases_30d", "support_tickets_30d", "plan_changes_30d", "active_days_7d",
          "active_days_30d", "days_since_last_event", "tenure_days")
CATEGORIES = {"plan": ("free", "basic", "premium"), "device": ("ios", "android", "web", "tv"),
              "country": ("US", "GB", "DE", "FR", "BR", "IN")}
NAMES = (*COUNTS[:7], "spend_30d", *COUNTS[7:], *CATEGORIES)
SPEC = FeatureSpec(NAMES, CATEGORIES)


def features(n: int, seed: int = 0) -> pa.Table:
    """n inference rows in the features contract (no label), deterministic."""
    rng = np.random.default_rng(seed)
    cols: dict[str, pa.Array] = {
        "user_id": pa.array([f"u{i:04d}" for i in range(n)]),
        "snapshot_date": pa.array([DAY] * n, pa.date32()),
    }
    for name in COUNTS:
        cols[name] = pa.array(rng.integers(0, 30, n), pa.int64())
    cols["spend_30d"] = pa.array(rng.gamma(2.0, 10.0, n), pa.float64())
    for name, vocab in CATEGORIES.items():
        cols[name] = pa.array(rng.choice(vocab, n).tolist(), pa.string())
    return pa.table(cols)


def with_gaps(table: pa.Table) -> pa.Table:
    """Rows 1-3 unscorable (required feature or key null); rows 4-5 scorable oddities."""
    data = table.to_pydict()
    data["tenure_days"][1] = None
    data["days_since_last_event"][2] = None
    data["user_id"][3] = None
    data["sessions_7d"][4] = None  # not required: scored as missing
    data["country"][5] = "XX"  # unknown category: scored as missing
    return pa.table(data, schema=table.schema)


EXPECTED_ERRORS = [
    {"entity_id": None, "reason": "missing_entity_id"},
    {"entity_id": "u0001", "reason": "missing_feature:tenure_days"},
    {"entity_id": "u0002", "reason": "missing_feature:days_since_last_event"},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A real booster trained on synthetic rows, saved as a model artifact."""
    frame = features(300, seed=1).to_pandas()
    label = ((frame["sessions_7d"] < 10) | (frame["plan"] == "free")).astype(int)
    matrix = xgb.DMatrix(artifact.to_frame(frame, SPEC), label=label,
                         enable_categorical=True)
    params = {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0,
              "tree_method": "hist", "max_cat_to_onehot": 8}
    booster = xgb.train(params, matrix, num_boost_round=15)
    return artifact.save(tmp_path_factory.mktemp("model"), booster, SPEC)


def expected_scores(model_dir: Path, table: pa.Table) -> dict[str, float]:
    """entity → artifact.predict score, for the scorable rows of `table`."""
    booster, spec = artifact.load(model_dir)
    ok = table.filter(np.array([i not in (1, 2, 3) for i in range(table.num_rows)]))
    scores = artifact.predict(booster, ok.to_pandas(), spec)
    return dict(zip(ok["user_id"].to_pylist(), scores.tolist(), strict=True))


def _rows(tables):
    return [row for t in tables for row in t.to_pylist()]


def test_score_predictions_transform(cfg, model_dir) -> None:
    table = with_gaps(features(40))
    expected = expected_scores(model_dir, table)

    def check_predictions(tables):
        rows = _rows(tables)
        assert all(t.schema == score.PREDICTIONS_SCHEMA for t in tables)
        assert sorted(r["entity_id"] for r in rows) == sorted(expected)
        for r in rows:
            assert abs(r["score"] - expected[r["entity_id"]]) <= 1e-9
            assert (r["snapshot_date"], r["model_name"], r["model_version"],
                    r["data_version"], r["scored_at"]) == (DAY, "churn", "7", "dv1", AT)

    def check_errors(tables):
        rows = sorted(_rows(tables), key=lambda r: r["entity_id"] or "")
        assert rows == EXPECTED_ERRORS

    with BeamTestPipeline(options=pipeline_options(cfg)) as p:
        out = (p | beam.Create([table.slice(0, 25), table.slice(25)])
               | score.ScorePredictions(model_dir, "churn", "7", "dv1", AT,
                                        cfg.features.required, entity_key="user_id",
                                        batch_size=7))
        assert_that(out["predictions"], check_predictions, label="CheckPredictions")
        assert_that(out["errors"], check_errors, label="CheckErrors")


def test_score_predictions_refuses_batches_without_a_model_feature(cfg, model_dir) -> None:
    table = features(5).drop_columns(["plays_30d"])
    with pytest.raises(Exception, match="plays_30d"):  # noqa: B017 - Beam wraps the error
        with BeamTestPipeline(options=pipeline_options(cfg)) as p:
            _ = (p | beam.Create([table])
                 | score.ScorePredictions(model_dir, "m", "1", "dv", AT, cfg.features.required,
                                          entity_key="user_id"))


def test_score_predictions_wants_an_aware_timestamp(model_dir) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        score.ScorePredictions(model_dir, "m", "1", "dv", datetime(2026, 3, 2), (),
                               entity_key="user_id")


def write_inference(cfg, table: pa.Table, data_version: str = "dv-abc") -> str:
    """The inference dataset for DAY as the features step leaves it."""
    path = Lake(cfg.lake_root).dataset("inference", DAY)
    Path(path).mkdir(parents=True)
    half = table.num_rows // 2
    pq.write_table(table.slice(0, half), f"{path}/part-00000.parquet", row_group_size=16)
    pq.write_table(table.slice(half), f"{path}/part-00001.parquet", row_group_size=16)
    Path(path, "_SUCCESS").touch()
    lake.write_json(lake.manifest_path(path), {"data_version": data_version,
                                               "row_count": table.num_rows})
    return path


def test_run_end_to_end_and_rerun_is_identical(cfg, model_dir) -> None:
    cfg = cfg.with_overrides({"engines.beam.batch_size": 10})
    table = with_gaps(features(60))
    write_inference(cfg, table)
    expected = expected_scores(model_dir, table)

    first = score.run(cfg, DAY, model_dir, "churn", "7", scored_at=AT)
    assert (first.rows_in, first.scored, first.errors, first.runner) == (60, 57, 3, "FnApiRunner")
    assert first.predictions_path == Lake(cfg.lake_root).predictions(DAY)
    preds = pq.read_table(first.predictions_path)
    assert preds.schema.remove_metadata() == score.PREDICTIONS_SCHEMA
    assert preds.num_rows == len(set(preds["entity_id"].to_pylist())) == 57
    got = dict(zip(preds["entity_id"].to_pylist(), preds["score"].to_pylist(), strict=True))
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in got) <= 1e-9
    assert set(preds["data_version"].to_pylist()) == {"dv-abc"}
    assert set(preds["scored_at"].to_pylist()) == {AT}
    errors = pq.read_table(first.errors_path)
    assert errors.schema.remove_metadata() == score.ERRORS_SCHEMA
    assert sorted(errors.to_pylist(), key=lambda r: r["entity_id"] or "") == EXPECTED_ERRORS
    manifest = lake.read_json(lake.manifest_path(first.predictions_path))
    assert manifest is not None and manifest["row_count"] == 57

    second = score.run(cfg, DAY, model_dir, "churn", "7", scored_at=AT)
    assert second == first
    again = pq.read_table(second.predictions_path).sort_by("entity_id")
    assert again.equals(preds.sort_by("entity_id"))


def test_run_without_errors_writes_an_empty_errors_file(cfg, model_dir) -> None:
    write_inference(cfg, features(8))
    result = score.run(cfg, DAY, model_dir, "churn", "7", scored_at=AT)
    assert (result.scored, result.errors) == (8, 0)
    empty = pq.read_table(result.errors_path)
    assert empty.num_rows == 0 and empty.schema.remove_metadata() == score.ERRORS_SCHEMA


def test_run_refuses_a_dataset_missing_a_model_feature(cfg, model_dir) -> None:
    write_inference(cfg, features(8).drop_columns(["spend_30d", "device"]))
    with pytest.raises(FeatureMismatchError, match=r"\['spend_30d', 'device'\]"):
        score.run(cfg, DAY, model_dir, "churn", "7")
    assert not lake.exists(Lake(cfg.lake_root).predictions(DAY))


def test_run_without_inference_dataset_names_the_path(cfg, model_dir) -> None:
    path = Lake(cfg.lake_root).dataset("inference", DAY)
    with pytest.raises(FileNotFoundError, match=path):
        score.run(cfg, DAY, model_dir, "churn", "7")
