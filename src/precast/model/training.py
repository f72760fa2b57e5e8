"""Training an XGBoost booster: the device, the feature spec, the validation split of whole
entities, monotone constraints, early stopping. The whole deterministic path that the train
step runs and `precast retrain --like` replays."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from precast.config import Config, ConfigError, TrainConfig, xgboost_params
from precast.data.datasets import LABEL, key_columns
from precast.metrics import Task
from precast.model import artifact

if TYPE_CHECKING:
    import xgboost as xgb

log = logging.getLogger(__name__)


TRAINING_CONFIG = "training_config.json"  # run artifact: what retrain needs besides the data


class DeviceError(RuntimeError):
    """A GPU was requested or expected but training did not run on it."""


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
                 ) -> artifact.FeatureSpec:
    """Features = every column but keys and label; vocabularies from the training rows."""
    names = tuple(c for c in df.columns if c not in (*keys, LABEL))
    vocab = {c: tuple(sorted(df[c].dropna().astype(str).unique())) for c in names
             if c in categorical}
    return artifact.FeatureSpec(names, vocab)


def split_validation(df: pd.DataFrame, fraction: float, seed: int, key: str
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out whole entities (never the same one on both sides), deterministically."""
    entities = np.array(sorted(df[key].unique()))
    held = set(np.random.default_rng(seed).permutation(entities)[: int(len(entities) * fraction)])
    mask = df[key].isin(held)
    return df[~mask], df[mask]


def monotone_constraints(spec: artifact.FeatureSpec, train_config: TrainConfig) -> dict[str, int]:
    """`train.monotone` checked against the model's features: a config error names any
    feature the training data lacks (or a categorical one, which has no order)."""
    unknown = sorted(set(train_config.monotone) - set(spec.names))
    if unknown:
        raise ConfigError(f"config error at train.monotone: unknown features {unknown}; "
                          f"the model's features are {', '.join(spec.names)}")
    unordered = sorted(set(train_config.monotone) & set(spec.categorical))
    if unordered:
        raise ConfigError(f"config error at train.monotone: {unordered} are categorical "
                          "and cannot be monotone")
    return dict(train_config.monotone)


def fit(train: pd.DataFrame, valid: pd.DataFrame, spec: artifact.FeatureSpec,
        train_config: TrainConfig, device: str, task: Task = "binary") -> xgb.Booster:
    """Train with early stopping on `valid`; deterministic for fixed data, params, seed.
    The objective and eval metric default from `task` (config.TASK_PARAMS)."""
    import xgboost as xgb

    params: dict[str, Any] = {**xgboost_params(task, train_config.params),
                              "seed": train_config.seed, "device": device,
                              "nthread": train_config.nthread or os.cpu_count() or 1}
    monotone = monotone_constraints(spec, train_config)
    if monotone:  # by feature name: XGBoost maps names to the DMatrix's columns
        params["monotone_constraints"] = monotone
    dtrain = xgb.DMatrix(artifact.to_frame(train, spec), label=train[LABEL],
                         enable_categorical=True)
    dvalid = xgb.DMatrix(artifact.to_frame(valid, spec), label=valid[LABEL],
                         enable_categorical=True)
    booster = xgb.train(params, dtrain, num_boost_round=train_config.num_boost_round,
                        evals=[(dvalid, "valid")],
                        early_stopping_rounds=train_config.early_stopping_rounds,
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
                ) -> tuple[xgb.Booster, artifact.FeatureSpec, str]:
    """Booster, feature spec and device for a training dataset: the whole deterministic
    training path that `run` takes and `precast retrain --like` replays.

    With `train.engine: spark` the dataset at `dataset_path` is trained on by xgboost.spark
    on the configured Spark master (precast.model.spark_train); the artifact is the same.
    """
    spec = feature_spec(train_df, cfg.features.categorical, key_columns(cfg.events))
    device = choose_device(cfg.train.device)
    log.info("training on %d rows, %d features, device=%s, engine=%s", len(train_df),
             len(spec.names), device, cfg.train.engine)
    if cfg.train.engine == "spark":
        from precast.model import spark_train

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


def logged_params(cfg: Config, booster: xgb.Booster) -> dict[str, Any]:
    """The parameters every training run logs (and its model card lists): the task and the
    XGBoost parameters it trained with (objective and eval metric included)."""
    return {"task": cfg.model.task, **xgboost_params(cfg.model.task, cfg.train.params),
            "num_boost_round": cfg.train.num_boost_round,
            "early_stopping_rounds": cfg.train.early_stopping_rounds, "seed": cfg.train.seed,
            "best_iteration": booster.best_iteration,
            "monotone": json.dumps(cfg.train.monotone, sort_keys=True)}
