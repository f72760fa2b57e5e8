"""Process environment for entry points (CLI, jobs, tests): set once, before heavy imports."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import precast

QUIET_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars on the console
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}


def prepare_environment() -> None:
    """Set the environment defaults that keep the stack quiet and offline (never overrides),
    and make what this process writes private to its user (umask 077: folders 0700, files
    0600): PRECAST_HOME holds the SQLite store, MLflow's database and Airflow's secrets."""
    os.umask(0o077)
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Seen on this stack: PySpark warns about pandas 3 on every conversion, and MLflow
    # on SQLAlchemy 2.1 raises an SADeprecationWarning; both are known and harmless here.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message=".*noload.*")


def configure_logging(level: int = logging.INFO) -> None:
    """Configure logging once, in an entry point; quiet the chatty libraries."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("py4j", "pyspark", "great_expectations", "mlflow", "alembic", "urllib3",
                  "apache_beam", "airflow", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def code_version() -> str:
    """The git sha of the working tree when there is one, else the package version."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{sha}{'-dirty' if dirty else ''}" if sha else precast.__version__
    except (OSError, subprocess.SubprocessError):
        return precast.__version__
