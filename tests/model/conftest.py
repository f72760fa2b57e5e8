"""One model trained once per test session, through the pipeline's own steps, on generated logs.

Generated logs → extract → features → `precast.steps.train.run` (a real MLflow run and
registered version), so every model test judges what production trains and registers.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
import xgboost as xgb

from precast import lake as lk
from precast import model_artifact as ma
from precast import pipeline, registry
from precast.steps import train
from tests.conftest import World, make_world


@dataclass(frozen=True)
class Trained:
    """The session's model (as registered) and the datasets it was trained and tested on."""

    world: World
    result: train.TrainResult
    booster: xgb.Booster
    spec: ma.FeatureSpec
    train_rows: pd.DataFrame
    test_rows: pd.DataFrame


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, spark) -> Trained:
    """Extract and features for the small world's run date, then one registered training run."""
    w = make_world(tmp_path_factory.mktemp("model-world"))
    for step in ("extract", "features"):
        pipeline.run_step(w.cfg, step, w.run_date)
    result = train.run(w.cfg, w.run_date)
    ref = registry.by_alias(w.cfg, registry.CHALLENGER)
    assert ref is not None and ref.version == result.model_version
    booster, spec = ma.load(registry.local_model(w.cfg, ref))
    lake = lk.Lake(w.cfg.lake_root)
    train_rows, _ = train.load_dataset(lake.dataset("train", w.run_date))
    test_rows, _ = train.load_dataset(lake.dataset("test", w.run_date))
    return Trained(w, result, booster, spec, train_rows, test_rows)
