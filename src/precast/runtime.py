"""Process environment for entry points (CLI, jobs, tests): set once, before heavy imports."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import precast

QUIET_ENV = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no progress bars on the console
    # MLflow prints "View run ... at: <tracking URI>" on stdout, a password in it included
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "SPARK_LOCAL_IP": "127.0.0.1",
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
}
# MLflow's HTTP client retries a tracking server that is down for about 4 minutes by default
# (7 retries, backoff factor 2): a step then hangs before it fails. Here it fails within
# seconds (RegistryUnavailableError, retryable) and the task's own retries wait for the
# server; a deployment that wants longer sets these itself.
MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def prepare_environment() -> None:
    """Set the environment defaults that keep the stack quiet and offline (never overrides),
    and make what this process writes private to its user (umask 077: folders 0700, files
    0600): PRECAST_HOME holds the SQLite store, MLflow's database and Airflow's secrets."""
    os.umask(0o077)
    install_redaction()
    for key, value in {**QUIET_ENV, **MLFLOW_CLIENT_ENV}.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    # Seen on this stack: PySpark warns about pandas 3 on every conversion, and MLflow
    # on SQLAlchemy 2.1 raises an SADeprecationWarning; both are known and harmless here.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    warnings.filterwarnings("ignore", message=".*noload.*")


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback (config.redact_text), so a library that
    logs a URL with its password (SQLAlchemy, MLflow, py4j) leaks nothing. Cheap: a
    message with neither `://` nor `=` is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        from precast.config import redact_text

        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format: logging reports it when it emits
            return True
        if "://" in message or "=" in message:
            record.msg, record.args = redact_text(message), None
        if record.exc_info:  # a traceback that names a secret travels redacted, as text:
            trace = logging.Formatter().formatException(record.exc_info)
            shown = redact_text(trace)
            if shown != trace:  # and no formatter (Airflow's structlog) sees exc_info
                record.msg = f"{redact_text(message)}\n{shown}"
                record.args = None
                record.exc_info, record.exc_text = None, None
        return True


_REDACTING = RedactingFilter()


def _redacting_factory(factory: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = factory(*args, **kwargs)
        _REDACTING.filter(record)
        return record
    make.redacts = True  # type: ignore[attr-defined]
    return make


def install_redaction() -> None:
    """Redact every log record as it is made (once per process; idempotent): whichever
    handler then writes it (the console, Airflow's task log, pytest's caplog) gets no
    secret. Called by prepare_environment, so by every entry point."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts", False):
        logging.setLogRecordFactory(_redacting_factory(factory))


def configure_logging(level: int = logging.INFO) -> None:
    """Configure logging once, in an entry point; quiet the chatty libraries; redact."""
    install_redaction()
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
