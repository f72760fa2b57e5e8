"""Distributed training with `xgboost.spark` (`train.engine: spark`).

The training dataset is read from the lake by Spark on `engines.spark.master` (a cluster,
or `local[*]`), never collected to the driver; XGBoost trains across `train.spark_workers`
Spark tasks (default: the cluster's default parallelism) on CPU or GPU workers. The result
is the same artifact as the in-process engine — an `xgboost.Booster` with precast's feature
spec, cut to its best round — so registration, the gate and scoring do not care which engine
trained it.

Categorical features are encoded as their index in the spec's vocabulary (the codes
pandas gives a `Categorical` on that vocabulary at scoring time) and declared as XGBoost
categorical features; a value outside the vocabulary is missing, as at scoring. The
validation rows are whole entities chosen by a seeded hash of the entity id (the in-process
engine draws them with numpy; the two engines' models are not bit-identical).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from precast.config import Config, xgboost_params
from precast.data.datasets import LABEL
from precast.model import artifact

if TYPE_CHECKING:
    import xgboost as xgb
    from pyspark.sql import Column

log = logging.getLogger(__name__)

VALID_COLUMN = "_precast_is_valid"
_HASH_BUCKETS = 1_000_000


def _feature(name: str, spec: artifact.FeatureSpec) -> Column:
    """A feature as a double: categoricals become their vocabulary index (else null)."""
    from pyspark.sql import functions as F

    if name not in spec.categorical:
        return F.col(name).cast("double").alias(name)
    pairs = [part for i, value in enumerate(spec.categorical[name])
             for part in (F.lit(value), F.lit(float(i)))]
    return F.create_map(*pairs)[F.col(name).cast("string")].alias(name)


def booster_params(cfg: Config, spec: artifact.FeatureSpec, device: str) -> dict[str, Any]:
    """SparkXGBClassifier (binary) or SparkXGBRegressor (regression) arguments equivalent to
    the in-process engine's parameters; the classifier sets its objective itself."""
    train_config = cfg.train
    params = xgboost_params(cfg.model.task, train_config.params)
    if cfg.model.task == "binary":
        params.pop("objective")
    if train_config.monotone:
        params["monotone_constraints"] = dict(train_config.monotone)
    return {**params, "device": device, "random_state": train_config.seed,
            "n_estimators": train_config.num_boost_round,
            "early_stopping_rounds": train_config.early_stopping_rounds,
            "feature_types": ["c" if n in spec.categorical else "q" for n in spec.names]}


def fit(cfg: Config, dataset_path: str, spec: artifact.FeatureSpec, device: str) -> xgb.Booster:
    """Train on the Parquet dataset at `dataset_path` through xgboost.spark; the booster."""
    from pyspark.sql import functions as F
    from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor

    from precast.engines.spark import spark_session

    spark = spark_session(cfg)
    train_config = cfg.train
    key = F.col(cfg.events.entity_key).cast("string")
    held = (F.abs(F.xxhash64(key, F.lit(train_config.seed))) % _HASH_BUCKETS
            < int(train_config.validation_fraction * _HASH_BUCKETS))
    data = spark.read.parquet(dataset_path).select(
        *(_feature(name, spec) for name in spec.names),
        F.col(LABEL).cast("double").alias(LABEL), held.alias(VALID_COLUMN))
    workers = train_config.spark_workers or spark.sparkContext.defaultParallelism
    log.info("training with xgboost.spark on %s: %d workers, device=%s",
             cfg.engines.spark.master, workers, device)
    estimator_class = SparkXGBRegressor if cfg.model.task == "regression" else SparkXGBClassifier
    estimator = estimator_class(
        features_col=list(spec.names), label_col=LABEL, validation_indicator_col=VALID_COLUMN,
        num_workers=workers, **booster_params(cfg, spec, device))
    booster: xgb.Booster = estimator.fit(data).get_booster()
    return booster
