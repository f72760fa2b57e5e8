"""`train.engine: spark`: the whole training and predict chains with xgboost.spark on local[2].

The Spark-trained model is registered as the same artifact as the in-process engine's, so
the gate, Beam scoring and publishing run unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from precast import pipeline, store
from precast.data import datasets
from precast.lake import Lake
from precast.metrics import classification_metrics
from precast.model import artifact, registry
from precast.serving.lookup import LookupClient
from tests.helpers import make_world


def test_training_through_xgboost_spark_feeds_the_same_gate_and_scoring(
        tmp_path: Path, spark) -> None:
    world = make_world(tmp_path, {"train": {"num_boost_round": 150, "early_stopping_rounds": 15,
                                            "engine": "spark", "spark_workers": 2}})
    cfg = world.cfg
    assert cfg.train.engine == "spark"
    pipeline.run_chain(cfg, "training", world.run_date)

    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None and champion.tags["engine"] == "spark"
    assert champion.tags["gate.decision"] == "promoted"
    booster, spec = artifact.load(registry.local_model(cfg, champion))
    assert booster.num_boosted_rounds() == booster.best_iteration + 1  # cut to its best round
    assert set(spec.categorical) == {"plan", "device", "country"}
    assert dict(zip(booster.feature_names or [], booster.feature_types or [], strict=True)) \
        == {n: "c" if n in spec.categorical else "q" for n in spec.names}

    test, _ = datasets.load_dataset(Lake(cfg.lake_root).dataset("test", world.run_date))
    scores = artifact.predict(booster, test, spec)
    assert classification_metrics(test["label"].to_numpy(), scores)["roc_auc"] > 0.65
    # Spark encoded each categorical as its vocabulary index; scoring's pandas Categorical on
    # the same vocabulary must mean the same: a plan the model splits on changes scores.
    flipped = test.assign(plan=test["plan"].map(dict(zip(
        spec.categorical["plan"], reversed(spec.categorical["plan"]), strict=True))))
    assert not np.array_equal(artifact.predict(booster, flipped, spec), scores)

    pipeline.run_chain(cfg, "predict", world.run_date)
    current = store.current(cfg.predictions_url)
    assert current is not None and current.model_version == champion.version
    predictions = pd.read_parquet(Lake(cfg.lake_root).predictions(world.run_date))
    ids = predictions["entity_id"].head(5).tolist()
    with LookupClient(cfg.predictions_url) as client:
        assert [round(hit.score or 0.0, 12) for hit in client.get(ids)] == [
            round(s, 12) for s in predictions["score"].head(5)]
