"""Serving/training skew: features computed for scoring equal the features trained on.

The features step computes the inference dataset of a date from the events up to that
date (what scoring reads); a later run date trains on the same snapshot, computed
weeks afterwards with more events in the lake. Same entity and snapshot ⇒ same row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precast.data import datasets
from precast.lake import Lake
from precast.model import artifact
from precast.steps import features
from tests.helpers import Trained, copy_world


@pytest.fixture(scope="module")
def serving_and_training(trained: Trained, spark, tmp_path_factory: pytest.TempPathFactory
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(inference rows scored on snapshot S, training rows of snapshot S), both by user; the
    inference dataset is written in a copy of the session's world."""
    cfg = copy_world(trained.world, tmp_path_factory.mktemp("skew")).cfg
    snapshot = features.snapshot_plan(trained.world.run_date, cfg.features)["train"][-1]
    features.run(cfg, snapshot, kinds=("inference",), spark=spark)
    served, _ = datasets.load_dataset(Lake(cfg.lake_root).dataset("inference", snapshot))
    rows = trained.train_rows
    trained_on = rows[pd.to_datetime(rows["snapshot_date"]).dt.date == snapshot]
    return served.set_index("user_id"), trained_on.set_index("user_id")


def test_same_entities_on_both_sides(serving_and_training) -> None:
    served, trained_on = serving_and_training
    assert len(trained_on) > 500
    assert sorted(served.index) == sorted(trained_on.index)


def test_scoring_features_equal_training_features(trained: Trained,
                                                  serving_and_training) -> None:
    served, trained_on = serving_and_training
    served = served.loc[trained_on.index]
    exact = [c for c in trained.spec.names if served[c].dtype.kind != "f"]
    assert len(exact) >= 14  # counts, days and categoricals: identical values
    for column in exact:
        assert served[column].tolist() == trained_on[column].tolist(), column
    # Every column exactly, spend_30d too (the churn example's features.sql sums it as DECIMAL,
    # so the order in which Spark adds the amounts cannot change the last bit).
    pd.testing.assert_frame_equal(artifact.to_frame(served, trained.spec),
                                  artifact.to_frame(trained_on, trained.spec), check_exact=True)
    np.testing.assert_array_equal(artifact.predict(trained.booster, served, trained.spec),
                                  artifact.predict(trained.booster, trained_on, trained.spec))
