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
metrics logged (precast.model.metrics: binary ROC AUC, log loss...; regression RMSE, MAE, bias, R²).
Regression predictions are the raw values, in the label's units.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from precast import lake as lk
from precast.config import Config, ConfigError, TrainConfig, redact, xgboost_params
from precast.gate import card
from precast.model import artifact as ma
from precast.model import metrics as mx
from precast.model import registry
from precast.runtime import code_version
from precast.steps.features import LABEL, key_columns

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger(__name__)

TRAINING_CONFIG = "training_config.json"  # run artifact: what retrain needs besides the data


class DeviceError(RuntimeError):
    """A GPU was requested or expected but training did not run on it."""


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


def gpu_available() -> bool:
    """True when this XGBoost build has CUDA and nvidia-smi lists a GPU."""
    import xgboost as xgb

    if not xgb.build_info().get("USE_CUDA") or shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_device(requested: str) -> str:
    """`auto` → cuda when a usable GPU exists, else cpu; explicit choices win."""
    return requested if requested != "auto" else ("cuda" if gpu_available() else "cpu")


def feature_spec(df: pd.DataFrame, categorical: tuple[str, ...], keys: tuple[str, ...]
                 ) -> ma.FeatureSpec:
    """Features = every column but keys and label; vocabularies from the training rows."""
    names = tuple(c for c in df.columns if c not in (*keys, LABEL))
    vocab = {c: tuple(sorted(df[c].dropna().astype(str).unique())) for c in names
             if c in categorical}
    return ma.FeatureSpec(names, vocab)


def split_validation(df: pd.DataFrame, fraction: float, seed: int, key: str
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole entities (never the same one on both sides), deterministically."""
    entities = np.array(sorted(df[key].unique()))
    held = set(np.random.default_rng(seed).permutation(entities)[: int(len(entities) * fraction)])
    mask = df[key].isin(held)
    return df[~mask], df[mask]


def monotone_constraints(spec: ma.FeatureSpec, tc: TrainConfig) -> dict[str, int]:
    """`train.monotone` checked against the model's features: a config error names any
    feature the training data lacks (or a categorical one, which has no order)."""
    unknown = sorted(set(tc.monotone) - set(spec.names))
    if unknown:
        raise ConfigError(f"config error at train.monotone: unknown features {unknown}; "
                          f"the model's features are {', '.join(spec.names)}")
    unordered = sorted(set(tc.monotone) & set(spec.categorical))
    if unordered:
        raise ConfigError(f"config error at train.monotone: {unordered} are categorical "
                          "and cannot be monotone")
    return dict(tc.monotone)


def fit(train: pd.DataFrame, valid: pd.DataFrame, spec: ma.FeatureSpec, tc: TrainConfig,
        device: str, task: mx.Task = "binary") -> xgb.Booster:
    """Train with early stopping on `valid`; deterministic for fixed data, params, seed.
    The objective and eval metric default from `task` (config.TASK_PARAMS)."""
    import xgboost as xgb

    params: dict[str, Any] = {**xgboost_params(task, tc.params), "seed": tc.seed,
                              "device": device, "nthread": tc.nthread or os.cpu_count() or 1}
    monotone = monotone_constraints(spec, tc)
    if monotone:  # by feature name: XGBoost maps names to the DMatrix's columns
        params["monotone_constraints"] = monotone
    dtrain = xgb.DMatrix(ma.to_frame(train, spec), label=train[LABEL], enable_categorical=True)
    dvalid = xgb.DMatrix(ma.to_frame(valid, spec), label=valid[LABEL], enable_categorical=True)
    booster = xgb.train(params, dtrain, num_boost_round=tc.num_boost_round,
                        evals=[(dvalid, "valid")], early_stopping_rounds=tc.early_stopping_rounds,
                        verbose_eval=False)
    check_device(booster, device)
    return best_rounds(booster)


def check_device(booster: xgb.Booster, device: str) -> None:
    """DeviceError when a GPU was asked for but XGBoost trained elsewhere (it only warns)."""
    used = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    if device.startswith("cuda") and not used.startswith("cuda"):
        raise DeviceError(f"device {device!r} requested but XGBoost trained on {used!r}")


def best_rounds(booster: xgb.Booster) -> xgb.Booster:
    """The booster cut to its best iteration: early stopping trains `early_stopping_rounds`
    past the best one, and every prediction (gate, scoring) would otherwise use them."""
    best = int(booster.best_iteration)
    kept = booster[: best + 1]
    kept.set_attr(best_iteration=str(best))
    return kept


def train_model(cfg: Config, train_df: pd.DataFrame, dataset_path: str | None = None
                ) -> tuple[xgb.Booster, ma.FeatureSpec, str]:
    """Booster, feature spec and device for a training dataset: the whole deterministic
    training path that `run` takes and `precast retrain --like` replays.

    With `train.engine: spark` the dataset at `dataset_path` is trained on by xgboost.spark
    on the configured Spark master (precast.engines.spark_train); the artifact is the same.
    """
    spec = feature_spec(train_df, cfg.features.categorical, key_columns(cfg.events))
    device = choose_device(cfg.train.device)
    log.info("training on %d rows, %d features, device=%s, engine=%s", len(train_df),
             len(spec.names), device, cfg.train.engine)
    if cfg.train.engine == "spark":
        from precast.engines import spark_train

        if dataset_path is None:
            raise ValueError("train.engine spark trains from the lake: give the dataset path")
        monotone_constraints(spec, cfg.train)  # the same config checks as in-process
        booster = spark_train.fit(cfg, dataset_path, spec, device)
        check_device(booster, device)
        return best_rounds(booster), spec, device
    fit_df, valid_df = split_validation(train_df, cfg.train.validation_fraction, cfg.train.seed,
                                        cfg.events.entity_key)
    return fit(fit_df, valid_df, spec, cfg.train, device, cfg.model.task), spec, device


def label_mean_tags(task: str, labels: np.ndarray) -> dict[str, float]:
    """The training label's mean, the lookup fallback of the version (precast.model.registry):
    `train_label_mean` for every task, and `train_label_rate` too for binary."""
    mean = float(np.mean(labels))
    return {"train_label_mean": mean, **({"train_label_rate": mean} if task == "binary" else {})}


def training_inputs(cfg: Config) -> dict[str, Any]:
    """The config sections training reads, as recorded on every run (TRAINING_CONFIG)."""
    return {"train": cfg.train.model_dump(mode="json"),
            "features": cfg.features.model_dump(mode="json")}


def load_dataset(path: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A features dataset (sorted by key) and its manifest; clear error when absent."""
    manifest = lk.read_json(lk.manifest_path(path))
    if manifest is None:
        raise FileNotFoundError(f"no dataset at {path}; run the features step first")
    if "key_columns" not in manifest:
        raise FileNotFoundError(f"the dataset at {path} names no key_columns (written by an "
                                "older precast); run the features step again")
    df = pd.read_parquet(path).sort_values(list(manifest["key_columns"]), kind="stable")
    return df.reset_index(drop=True), manifest


def logged_params(cfg: Config, booster: xgb.Booster) -> dict[str, Any]:
    """The parameters every training run logs (and its model card lists): the task and the
    XGBoost parameters it trained with (objective and eval metric included)."""
    return {"task": cfg.model.task, **xgboost_params(cfg.model.task, cfg.train.params),
            "num_boost_round": cfg.train.num_boost_round,
            "early_stopping_rounds": cfg.train.early_stopping_rounds, "seed": cfg.train.seed,
            "best_iteration": booster.best_iteration,
            "monotone": json.dumps(cfg.train.monotone, sort_keys=True)}


def _log_run(cfg: Config, booster: xgb.Booster, spec: ma.FeatureSpec, facts: dict[str, Any],
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
    test_metrics = mx.task_metrics(cfg.model.task, test_df[LABEL].to_numpy(),
                                   ma.predict(booster, test_df, spec))
    import xgboost

    facts = {"run_date": run_date.isoformat(), "data_version": train_manifest["data_version"],
             "test_data_version": test_manifest["data_version"], "code_version": code_version(),
             "device": device, "xgboost_version": xgboost.__version__, "seed": cfg.train.seed,
             "train_rows": len(train_df), "features": ",".join(spec.names),
             **label_mean_tags(cfg.model.task, train_df[LABEL].to_numpy()),
             "engine": cfg.train.engine,
             "model_sha256": ma.sha256(booster)}
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
