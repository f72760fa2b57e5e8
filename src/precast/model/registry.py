"""MLflow tracking and registry wrapper: experiment set-up, aliases, local model copies.

Aliases: `challenger` is set by train, `champion` only by the gate (or a person).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from precast.config import Config, redact, redact_text
from precast.model import artifact

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
SPEC_KEY = "feature_spec"


@dataclass(frozen=True)
class ModelRef:
    """One registered model version and the facts the pipeline needs about it."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]


def client(cfg: Config) -> MlflowClient:
    """An MlflowClient on the configured tracking/registry URI (experiment ensured)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    cfg.home.mkdir(parents=True, exist_ok=True)
    mlflow_client = MlflowClient(cfg.tracking_uri, cfg.tracking_uri)
    if mlflow_client.get_experiment_by_name(cfg.model.experiment) is None:
        mlflow_client.create_experiment(cfg.model.experiment, artifact_location=cfg.artifact_root)
    mlflow.set_experiment(cfg.model.experiment)
    return mlflow_client


class RegistryUnavailableError(RuntimeError):
    """The registry could not answer (locked, unreachable, broken): never read as "no such
    version or alias", since that would let a gate judge a challenger without its champion
    or past a pin. Retryable."""


def _absent(exc: Exception) -> bool:
    """Whether an MLflow error definitely says the model, version or alias does not exist."""
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "alias" in str(exc) and "not found" in str(exc))


def _unavailable(cfg: Config, what: str, exc: Exception) -> RegistryUnavailableError:
    reason = redact_text((str(exc).splitlines() or [type(exc).__name__])[0])
    return RegistryUnavailableError(f"model registry at {redact_text(cfg.tracking_uri)} could "
                                    f"not answer for {cfg.model.name} {what}: {reason}")


def by_alias(cfg: Config, alias: str) -> ModelRef | None:
    """The version holding `alias`, or None when no version has it (RegistryUnavailableError
    when the registry cannot say)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(cfg).get_model_version_by_alias(cfg.model.name, alias)
    except Exception as exc:  # fail closed: only a definite "does not exist" is None
        if isinstance(exc, MlflowException) and _absent(exc):
            return None
        raise _unavailable(cfg, f"@{alias}", exc) from None  # MLflow's words may hold the URI
    return _ref(mv)


def version(cfg: Config, number: str) -> ModelRef | None:
    """Version `number` of the configured model, or None when it does not exist
    (RegistryUnavailableError when the registry cannot say)."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(cfg).get_model_version(cfg.model.name, str(number))
    except Exception as exc:  # fail closed: only a definite "does not exist" is None
        if isinstance(exc, MlflowException) and _absent(exc):
            return None
        raise _unavailable(cfg, f"v{number}", exc) from None
    return _ref(mv)


def _ref(mv: Any) -> ModelRef:
    return ModelRef(mv.name, str(mv.version), mv.run_id or "", dict(mv.tags))


def lineage(ref: ModelRef) -> dict[str, Any]:
    """What a prediction snapshot records about the model that scored it (training run,
    training data and code versions, and the training mean of the label as the lookup
    fallback: binary its label rate, regression its mean; older versions tag the rate only)."""
    rate = ref.tags.get("train_label_mean", ref.tags.get("train_label_rate"))
    return {"mlflow_run_id": ref.run_id or None,
            "training_data_version": ref.tags.get("data_version"),
            "code_version": ref.tags.get("code_version"),
            "fallback_score": None if rate is None else float(rate)}


def set_alias(cfg: Config, alias: str, version: str) -> None:
    client(cfg).set_registered_model_alias(cfg.model.name, alias, version)
    log.info("alias %s of %s -> version %s", alias, cfg.model.name, version)


def tag_version(cfg: Config, version: str, tags: dict[str, str]) -> None:
    """Tag a version (values redacted: a tag never carries a password)."""
    mlflow_client = client(cfg)
    for key, value in tags.items():
        mlflow_client.set_model_version_tag(cfg.model.name, version, key, redact(value))


def log_artifacts(cfg: Config, run_id: str, folder: str, texts: dict[str, str],
                  files: list[Path]) -> str:
    """Texts (name -> content, redacted) and files (written redacted by their makers) into
    run `run_id`'s artifacts under `folder`; the folder's artifact URI."""
    mlflow_client = client(cfg)
    for name, text in texts.items():
        mlflow_client.log_text(run_id, redact(text), f"{folder}/{name}")
    for path in files:
        mlflow_client.log_artifact(run_id, str(path), folder)
    return redact_text(f"{mlflow_client.get_run(run_id).info.artifact_uri}/{folder}")


def local_model(cfg: Config, ref: ModelRef) -> Path:
    """A local model_artifact folder for `ref` (downloaded once, then cached under home)."""
    import mlflow
    from mlflow.models import Model

    target = cfg.home / "models" / ref.name / ref.version
    if (target / artifact.SPEC_FILE).exists():
        return target
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    src = Path(mlflow.artifacts.download_artifacts(
        f"models:/{ref.name}/{ref.version}", dst_path=str(staging / "mlflow"),
        tracking_uri=cfg.tracking_uri))
    meta = Model.load(str(src / "MLmodel"))
    booster_file = src / meta.flavors["xgboost"]["data"]
    shutil.copyfile(booster_file, staging / artifact.BOOSTER_FILE)
    spec = (meta.metadata or {})[SPEC_KEY]
    (staging / artifact.SPEC_FILE).write_text(json.dumps(spec, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target
