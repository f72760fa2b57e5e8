"""The monitor step's realised metrics per task, at unit level: a labelled snapshot's
predictions and labels written to a lake by hand, joined, measured, stored in the
prediction store's model_metrics and alerted on. The whole step (drift against a champion's
training reference) runs on the session's world in tests/integration/test_monitor.py."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from precast.config import Config
from precast.lake import Lake, manifest_path, write_json
from precast.monitoring import model_metrics, report
from precast.steps import monitor

RUN_DATE = date(2026, 3, 15)
HORIZON = 7
SNAPSHOT = RUN_DATE - timedelta(days=HORIZON)


def _cfg(tmp_path: Path, task: str, **monitor_cfg: Any) -> Config:
    return Config.model_validate({
        "name": "spend", "home": str(tmp_path / "home"),
        "model": {"task": task, "target_description": "spend over the next 7 days"},
        "features": {"label_horizon_days": HORIZON},
        "gate": {"slices": ["plan"]} | ({"metric": "rmse"} if task == "regression" else {}),
        "monitor": {"min_slice_rows": 2, **monitor_cfg}})


def _labelled_snapshot(cfg: Config, labels: list[float], scores: list[float]) -> None:
    """S's published predictions and S's labels (the test dataset of RUN_DATE) in the lake."""
    lake = Lake(cfg.lake_root)
    ids = [f"u{i}" for i in range(len(labels))]
    predictions = pd.DataFrame({"entity_id": ids, "score": scores, "model_version": "3"})
    labelled = pd.DataFrame({"entity_id": ids + ["u-older"], "label": [*labels, 99.0],
                             "snapshot_date": [SNAPSHOT] * len(ids) + [SNAPSHOT - timedelta(7)],
                             "plan": ["free", "free", "pro", "pro"][: len(ids)] + ["pro"]})
    for path, frame, manifest in (
            (lake.predictions(SNAPSHOT), predictions, {"row_count": len(ids)}),
            (lake.dataset("test", RUN_DATE), labelled,
             {"key_columns": ["entity_id", "snapshot_date"], "data_version": "t1"})):
        Path(path).mkdir(parents=True)
        frame.to_parquet(f"{path}/part-0.parquet")
        write_json(manifest_path(path), manifest)


def test_regression_realised_rmse_mae_bias_are_stored_and_alerted(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "regression", max_rmse=3.0, max_bias=1.0)
    # errors 2, -2, 3, 5: RMSE sqrt(42 / 4), MAE 3, bias 27 - 25 = 2
    _labelled_snapshot(cfg, [10.0, 20.0, 30.0, 40.0], [12.0, 18.0, 33.0, 45.0])
    found = monitor.realised(cfg, RUN_DATE)
    assert found is not None
    snapshot, version, joined = found
    assert (snapshot, version, len(joined)) == (SNAPSHOT, "3", 4)

    rows = monitor.live_metrics(cfg, joined)
    model_metrics.write_metrics(cfg, snapshot, version, "performance", rows)
    overall = {r.metric: r.value for r in rows if r.slice == ""}
    assert list(overall) == ["rmse", "mae", "r2", "mean_score", "mean_label", "bias"]
    assert overall["rmse"] == pytest.approx(math.sqrt(42 / 4))
    assert (overall["mae"], overall["bias"], overall["mean_label"]) == (3.0, 2.0, 25.0)
    assert overall["r2"] == pytest.approx(1 - 42 / 500)
    by_plan = {(r.slice, r.metric): r.value for r in rows if r.slice}
    assert by_plan[("plan=free", "rmse")] == pytest.approx(2.0)  # errors 2, -2
    assert by_plan[("plan=pro", "bias")] == pytest.approx(4.0)  # errors 3, 5
    for metric, value in (("rmse", math.sqrt(42 / 4)), ("mae", 3.0), ("bias", 2.0)):
        assert model_metrics.trend(cfg, "performance", metric) == [  # type: ignore[comparison-overlap]
            (SNAPSHOT, "3", pytest.approx(value))]

    raised = monitor.performance_alerts(cfg, snapshot, rows)
    assert [(a.rule, a.threshold) for a in raised] == [("live_rmse_above_max", 3.0),
                                                       ("prediction_bias", 1.0)]
    assert "observed mean label (spend over the next 7 days) is +2.0000" in raised[1].message
    assert monitor.performance_alerts(_cfg(tmp_path, "regression"), snapshot, rows) == []

    estimate, stored = monitor.estimated(cfg, np.array([12.0, 18.0, 33.0, 45.0]))
    assert math.isnan(estimate)  # regression: no label-free estimate
    assert [(r.metric, r.value) for r in stored] == [("mean_score", 27.0)]
    page = report.write(cfg, RUN_DATE, "3", np.array([10.0, 30.0, 50.0]),
                                np.array([12.0, 18.0, 33.0, 45.0]), [], raised).read_text()
    assert "RMSE by snapshot" in page and "ROC AUC" not in page and page.count("<svg") == 2


def test_binary_realised_metrics_and_alerts_are_unchanged(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, "binary")
    _labelled_snapshot(cfg, [0.0, 1.0, 0.0, 1.0], [0.9, 0.2, 0.8, 0.1])
    found = monitor.realised(cfg, RUN_DATE)
    assert found is not None
    rows = monitor.live_metrics(cfg, found[2])
    overall = {r.metric: r.value for r in rows if r.slice == ""}
    assert list(overall) == ["roc_auc", "pr_auc", "log_loss", "brier", "calibration_error",
                             "mean_score", "label_rate", "bias"]
    assert overall["roc_auc"] == 0.0 and overall["bias"] == pytest.approx(0.0)
    assert [a.rule for a in monitor.performance_alerts(cfg, SNAPSHOT, rows)] == [
        "live_roc_auc_below_min"]
    estimate, stored = monitor.estimated(cfg, np.array([0.9, 0.2, 0.8, 0.1]))
    assert 0 < estimate < 1 and [r.metric for r in stored] == ["roc_auc", "mean_score"]
