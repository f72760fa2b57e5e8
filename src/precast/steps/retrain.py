"""Retrain a registered model version from its recorded inputs and check it is the same model.

Run: `precast retrain --like 3` (add `--out DIR` to keep the retrained model).
Reads what train recorded on the version (run date, data version, device, and the
train/features config sections in the run's `training_config.json`), checks that the
lake still holds that exact training data, replays the training path of
`precast.steps.train` into a temporary folder and compares the model file byte for
byte with the registered one. Registers nothing and moves no alias. On CPU the bytes
must be identical; XGBoost on a GPU is not bit-reproducible, so there the retrained
model must agree within GPU_AUC_TOLERANCE of ROC AUC on the training rows (a regression
model: of R²).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from precast.config import Config
from precast.data import datasets
from precast.data.datasets import LABEL
from precast.errors import NotRetryable
from precast.metrics import task_metrics
from precast.model import artifact, registry, training
from precast.runtime import code_version

log = logging.getLogger(__name__)

GPU_AUC_TOLERANCE = 1e-3


class RetrainInputsError(NotRetryable, LookupError):
    """The version does not record what retraining needs, or the lake no longer has it."""


@dataclass(frozen=True)
class RetrainResult:
    model_name: str
    model_version: str
    run_date: str
    data_version: str
    device: str
    recorded_sha256: str
    retrained_sha256: str
    bytes_identical: bool
    max_score_diff: float  # on the training rows, registered vs retrained
    auc_diff: float  # `agreement` difference on the training rows
    recorded_code_version: str
    code_version: str
    model_dir: str | None  # the retrained model (None when it went to a temporary folder)
    agreement: str = "roc_auc"  # the metric compared: roc_auc (binary) or r2 (regression)

    @property
    def reproduced(self) -> bool:
        """Identical bytes; on a GPU, agreement within GPU_AUC_TOLERANCE of ROC AUC."""
        if self.device.startswith("cuda"):
            return self.bytes_identical or self.auc_diff <= GPU_AUC_TOLERANCE
        return self.bytes_identical


def recorded_inputs(cfg: Config, version: str) -> tuple[registry.ModelRef, dict[str, Any]]:
    """The version and the config sections its training run recorded."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow_client = registry.client(cfg)
    try:
        mv = mlflow_client.get_model_version(cfg.model.name, version)
        ref = registry.ModelRef(mv.name, str(mv.version), mv.run_id or "", dict(mv.tags))
        inputs = mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/{training.TRAINING_CONFIG}")
    except MlflowException as exc:
        raise RetrainInputsError(
            f"cannot retrain {cfg.model.name} v{version}: {str(exc).splitlines()[0]}") from None
    missing = [k for k in ("run_date", "data_version", "device") if k not in ref.tags]
    if missing:
        raise RetrainInputsError(f"{cfg.model.name} v{version} does not record {missing}")
    return ref, inputs


def replay_config(cfg: Config, ref: registry.ModelRef, inputs: dict[str, Any]) -> Config:
    """`cfg` with the recorded train and features sections, on the device the version used."""
    return cfg.with_overrides({"train": {**inputs["train"], "device": ref.tags["device"]},
                               "features": inputs["features"]})


def training_data(cfg: Config, ref: registry.ModelRef) -> Any:
    """The version's training rows from the lake; refused when their data version changed."""
    run_date = date.fromisoformat(ref.tags["run_date"])
    train_df, manifest = datasets.load_dataset(cfg.lake.dataset("train", run_date))
    if manifest["data_version"] != ref.tags["data_version"]:
        raise RetrainInputsError(
            f"the lake's train dataset for {run_date} has data version "
            f"{manifest['data_version']} but v{ref.version} was trained on "
            f"{ref.tags['data_version']}; restore that data (same raw logs, SQL and features "
            f"config, then `precast run features --date {run_date}`)")
    return train_df


def run(cfg: Config, version: str, out: Path | None = None) -> RetrainResult:
    """Retrain `version` like it was trained and compare the model bytes (nothing registered)."""
    ref, inputs = recorded_inputs(cfg, version)
    train_df = training_data(cfg, ref)
    path = cfg.lake.dataset("train", date.fromisoformat(ref.tags["run_date"]))
    booster, spec, device = training.train_model(replay_config(cfg, ref, inputs), train_df, path)
    registered_dir = registry.local_model(cfg, ref)
    registered, registered_spec = artifact.load(registered_dir)
    with tempfile.TemporaryDirectory(prefix="precast-retrain-") as tmp:
        model_dir = artifact.save(out or Path(tmp), booster, spec)
        identical = ((model_dir / artifact.BOOSTER_FILE).read_bytes()
                     == (registered_dir / artifact.BOOSTER_FILE).read_bytes())
    labels = train_df[LABEL].to_numpy()
    new, old = artifact.predict(booster, train_df, spec), artifact.predict(registered, train_df,
                                                               registered_spec)
    agreement = "roc_auc" if cfg.model.task == "binary" else "r2"
    auc_diff = abs(task_metrics(cfg.model.task, labels, new)[agreement]
                   - task_metrics(cfg.model.task, labels, old)[agreement])
    result = RetrainResult(
        ref.name, ref.version, ref.tags["run_date"], ref.tags["data_version"], device,
        ref.tags.get("model_sha256", ""), artifact.sha256(booster), identical,
        float(np.max(np.abs(new - old), initial=0.0)), float(auc_diff),
        ref.tags.get("code_version", ""), code_version(), str(out) if out else None, agreement)
    log.info("retrained %s v%s: bytes %s, max score diff %.3g", ref.name, ref.version,
             "identical" if identical else "differ", result.max_score_diff)
    return result
