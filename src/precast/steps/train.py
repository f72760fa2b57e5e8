"""Train (XGBoost): a seeded, tracked, registered challenger for one run date.

Run: `precast run train --date 2026-03-01` (or `python jobs/train.py --date ...`).
Reads the train/test datasets written by the features step; early-stops on a
validation split of whole entities; keeps the score monotone in the features that
`train.monotone` names; logs everything to MLflow, including what retraining needs
(the train and features config sections, seed, data and code versions, the model's
sha256: `precast retrain --like VERSION`); registers the model and gives it the
`challenger` alias.

The use case's `model.task` decides the objective and eval metric (binary: binary:logistic and
logloss, regression: reg:squarederror and rmse, unless `train.params` names them) and the test
metrics logged (precast.metrics: binary ROC AUC, log loss...; regression RMSE, MAE, bias, R²).
Regression predictions are the raw values, in the label's units.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np

from precast.config import Config, redact
from precast.data.datasets import LABEL, load_dataset
from precast.gate import card
from precast.metrics import task_metrics
from precast.model import artifact, registry
from precast.model.training import (
    TRAINING_CONFIG,
    label_mean_tags,
    logged_params,
    train_model,
    training_inputs,
)
from precast.runtime import code_version

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    model_version: str
    device: str
    best_iteration: int
    data_version: str
    test_data_version: str
    metrics: dict[str, float]


def _log_run(cfg: Config, booster: xgb.Booster, spec: artifact.FeatureSpec, facts: dict[str, Any],
             test_metrics: dict[str, float]) -> tuple[str, str]:
    """One MLflow run with params, metrics, tags, feature list and the registered model."""
    import mlflow
    import mlflow.xgboost

    registry.client(cfg)
    with mlflow.start_run(run_name=f"train-{facts['run_date']}") as run:
        mlflow.log_params(redact(logged_params(cfg, booster)))  # never a password in MLflow
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items() if np.isfinite(v)})
        mlflow.set_tags(redact({k: str(v) for k, v in facts.items()}))
        mlflow.log_dict(redact(spec.to_dict()), "features.json")
        mlflow.log_dict(redact(training_inputs(cfg)), TRAINING_CONFIG)
        info = mlflow.xgboost.log_model(booster, name="model",
                                        registered_model_name=cfg.model.name,
                                        metadata={registry.SPEC_KEY: spec.to_dict()})
    version = str(info.registered_model_version)
    registry.tag_version(cfg, version, {k: str(v) for k, v in facts.items()})
    registry.set_alias(cfg, registry.CHALLENGER, version)
    return run.info.run_id, version


# A training whose challenger already has these tags made the same model from the same
# inputs: a retried task (or a repeated run) registers no second, identical version.
SAME_TRAINING = ("run_date", "data_version", "test_data_version", "code_version",
                 "model_sha256")


def run(cfg: Config, run_date: date) -> TrainResult:
    """Train, evaluate on the test snapshot, track and register the challenger (once: a
    rerun that makes the same model from the same inputs returns the registered one)."""
    lake = cfg.lake
    train_path = lake.dataset("train", run_date)
    train_df, train_manifest = load_dataset(train_path)
    test_df, test_manifest = load_dataset(lake.dataset("test", run_date))
    booster, spec, device = train_model(cfg, train_df, train_path)
    test_metrics = task_metrics(cfg.model.task, test_df[LABEL].to_numpy(),
                                   artifact.predict(booster, test_df, spec))
    import xgboost

    facts = {"run_date": run_date.isoformat(), "data_version": train_manifest["data_version"],
             "test_data_version": test_manifest["data_version"], "code_version": code_version(),
             "device": device, "xgboost_version": xgboost.__version__, "seed": cfg.train.seed,
             "train_rows": len(train_df), "features": ",".join(spec.names),
             **label_mean_tags(cfg.model.task, train_df[LABEL].to_numpy()),
             "engine": cfg.train.engine,
             "model_sha256": artifact.sha256(booster)}
    prior = registry.by_alias(cfg, registry.CHALLENGER)
    if prior is not None and all(prior.tags.get(k) == str(facts[k]) for k in SAME_TRAINING):
        run_id, version = prior.run_id, prior.version  # a retry after it registered
        log.info("%s v%s already holds this model (same run date, data, code and bytes): "
                 "registering nothing new", cfg.model.name, version)
    else:
        run_id, version = _log_run(cfg, booster, spec, facts, test_metrics)
    card.log(cfg, card.CardFacts(  # the gate completes it (slices, decision)
        version, run_id, {k: str(v) for k, v in facts.items()}, spec.names,
        logged_params(cfg, booster), test_metrics, train_manifest, cfg.train.monotone))
    log.info("registered %s v%s (run %s): test %s", cfg.model.name, version, run_id,
             {k: round(v, 4) for k, v in test_metrics.items()})
    return TrainResult(run_id, cfg.model.name, version, device, int(booster.best_iteration),
                       facts["data_version"], facts["test_data_version"], test_metrics)
