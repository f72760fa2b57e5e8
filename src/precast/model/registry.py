"""MLflow tracking and registry wrapper: experiment set-up, aliases, local model copies.

Aliases: `challenger` is set by train, `champion` only by the gate (or a person).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import tempfile
from collections.abc import Iterator
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
OPEN_LOCK_KEY = 0x70726563  # "prec": the advisory lock a first open of MLflow's store holds


@dataclass(frozen=True)
class ModelRef:
    """One registered model version and the facts the pipeline needs about it."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]


_OPENED: set[str] = set()  # tracking URIs whose SQL store this process has opened


def client(cfg: Config) -> MlflowClient:
    """An MlflowClient on the configured tracking/registry URI (experiment ensured)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(cfg.tracking_uri)
    mlflow.set_registry_uri(cfg.tracking_uri)
    cfg.home.mkdir(parents=True, exist_ok=True)
    with _first_open(cfg.tracking_uri):
        mlflow_client = MlflowClient(cfg.tracking_uri, cfg.tracking_uri)  # opens the store
        if mlflow_client.get_experiment_by_name(cfg.model.experiment) is None:
            try:
                mlflow_client.create_experiment(cfg.model.experiment,
                                                artifact_location=cfg.artifact_root)
            except MlflowException as exc:  # another process created it meanwhile
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        mlflow_client.search_registered_models(max_results=1)  # opens the registry's store
    mlflow.set_experiment(cfg.model.experiment)
    return mlflow_client


@contextlib.contextmanager
def _first_open(uri: str) -> Iterator[None]:
    """Hold a lock across processes while this process first opens the MLflow SQL store at
    `uri`. MLflow creates and migrates an empty database on first open without a lock of
    its own: two tasks opening a new registry at once (parallel tasks of a fresh deployment)
    interleave its migrations and leave a database that no later open can repair. SQLite
    locks a file beside the database (processes of one machine, as SQLite requires);
    PostgreSQL takes an advisory lock (workers on any machine). Other stores (an MLflow
    server, a folder) need none."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0]
    if uri in _OPENED or scheme not in ("sqlite", "postgresql"):
        yield
        return
    if scheme == "sqlite":
        import sqlalchemy as sa

        database = sa.engine.make_url(uri).database
        if not database or database == ":memory:":
            yield
            return
        lock_path = Path(database).with_name(Path(database).name + ".open-lock")
        with contextlib.ExitStack() as stack:
            try:
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                lock = stack.enter_context(lock_path.open("a"))
            except OSError:  # a folder this process cannot write: it cannot migrate either
                lock = None
            if lock is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield
    else:
        with _advisory_lock(uri):
            yield
    _OPENED.add(uri)


@contextlib.contextmanager
def _advisory_lock(uri: str) -> Iterator[None]:
    """PostgreSQL's session advisory lock OPEN_LOCK_KEY on the database at `uri`."""
    import sqlalchemy as sa

    engine = sa.create_engine(uri, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": OPEN_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": OPEN_LOCK_KEY})
    finally:
        engine.dispose()


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
    target.parent.mkdir(parents=True, exist_ok=True)
    # This process's own staging folder: tasks that score with a new version at once each
    # download it, and the first to finish puts its copy in place.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # as a folder made the usual way: executors may run as another user
    try:
        src = Path(mlflow.artifacts.download_artifacts(
            f"models:/{ref.name}/{ref.version}", dst_path=str(staging / "mlflow"),
            tracking_uri=cfg.tracking_uri))
        meta = Model.load(str(src / "MLmodel"))
        booster_file = src / meta.flavors["xgboost"]["data"]
        shutil.copyfile(booster_file, staging / artifact.BOOSTER_FILE)
        spec = (meta.metadata or {})[SPEC_KEY]
        (staging / artifact.SPEC_FILE).write_text(json.dumps(spec, indent=2))
        if target.exists() and not (target / artifact.SPEC_FILE).exists():
            shutil.rmtree(target, ignore_errors=True)  # an older precast's incomplete copy
        with contextlib.suppress(OSError):  # another task's copy went in first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
