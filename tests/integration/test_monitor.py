"""The monitor step on the session's world: drift, estimate, realised metrics, alerts.

The world has trained and published for RUN_DATE; each test works on its own copy of it.
Here the predict chain's score step also runs for S = RUN_DATE − label horizon (whose labels
are complete by RUN_DATE), without publishing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from precast import pipeline, store
from precast.data.datasets import load_dataset
from precast.lake import Lake
from precast.metrics import classification_metrics
from precast.model import registry
from precast.monitoring import alerts
from precast.steps import monitor
from tests.helpers import World, replace_dataset


def _metrics(world: World, kind: str) -> pd.DataFrame:
    engine = store.make_engine(world.cfg.predictions_url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(sa.text("SELECT * FROM model_metrics WHERE kind = :kind"), conn,
                               params={"kind": kind})
    finally:
        engine.dispose()


def test_monitor_stores_drift_estimate_and_realised_metrics(own_world: World) -> None:
    world = own_world
    cfg, day = world.cfg, world.run_date
    labelled = day - timedelta(days=cfg.features.label_horizon_days)
    for step in ("inference_features", "score"):
        pipeline.run_step(cfg, step, labelled)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None

    result = monitor.run(cfg, day)
    assert result.labelled_snapshot == labelled and result.live is not None

    drift_rows = _metrics(world, "drift")
    features = set(champion.tags["features"].split(","))
    assert set(drift_rows["feature"]) == features | {"score"}  # every feature, every run
    psi = drift_rows[drift_rows["metric"] == "psi"]
    assert len(psi) == len(features) + 1 and psi["value"].notna().all()
    oov = set(drift_rows.loc[drift_rows["metric"] == "oov_rate", "feature"])
    assert oov == {"plan", "device", "country"}

    estimate = _metrics(world, "estimate")
    assert set(estimate["metric"]) == {"roc_auc", "mean_score"}
    assert 0.5 < float(estimate.loc[estimate["metric"] == "roc_auc", "value"].iloc[0]) < 1

    # The realised metrics are the predictions of S joined to S's labels (an oracle here).
    performance = _metrics(world, "performance")
    overall = performance[performance["slice"] == ""].set_index("metric")["value"]
    predictions = pd.read_parquet(Lake(cfg.lake_root).predictions(labelled))
    labels, _ = load_dataset(Lake(cfg.lake_root).dataset("test", day))
    joined = labels.merge(predictions, left_on="user_id", right_on="entity_id")
    expected = classification_metrics(joined["label"].to_numpy(), joined["score"].to_numpy())
    assert len(joined) > 200
    assert overall["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-12)
    assert overall["bias"] == pytest.approx(expected["mean_score"] - expected["label_rate"])
    assert set(performance["snapshot_date"].astype(str).str[:10]) == {labelled.isoformat()}
    slices = set(performance["slice"]) - {""}
    assert slices and all("=" in s for s in slices)

    page = Path(result.report_path).read_text()
    assert page.count("<svg") == 3  # trend, PSI bars, score distributions
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "<script" not in page
    for feature in features | {"score"}:
        assert f"<tr><td>{feature}</td>" in page

    # A rerun replaces its rows and raises nothing twice.
    before = alerts.alerts_of(cfg)
    again = monitor.run(cfg, day)
    assert again.alerts_raised == 0
    assert alerts.alerts_of(cfg) == before
    assert len(_metrics(world, "drift")) == len(drift_rows)


def test_unseen_categories_and_missing_values_raise_deduplicated_alerts(
        own_world: World, caplog: pytest.LogCaptureFixture) -> None:
    world = own_world
    cfg, day = world.cfg, world.run_date
    path = Lake(cfg.lake_root).dataset("inference", day)
    original, _ = load_dataset(path)
    tampered = original.copy()
    every_third = tampered.index % 3 == 0
    tampered.loc[every_third, "plan"] = "enterprise"  # a plan the model never saw
    tampered.loc[every_third, "sessions_30d"] = None
    replace_dataset(path, tampered)
    with caplog.at_level("WARNING", logger="precast.monitoring.alerts"):
        result = monitor.run(cfg, day)
    raised = {(a["rule"], a["subject"]) for a in alerts.alerts_of(cfg, day)}
    assert {("drift_oov_rate_max", "plan"),
            ("drift_missing_rate_increase_max", "sessions_30d")} <= raised
    assert {"plan", "sessions_30d"} <= set(result.drift_breaches)
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ALERT ")]
    assert any('"rule": "drift_oov_rate_max"' in line and '"subject": "plan"' in line
               for line in logged)
