"""Spark steps on a cluster: a Spark step (SPARK_JOBS) on a master that is not `local...` runs
as `spark-submit jobs/<step>.py`, its output streamed to the task log; exit status 2 or 3
(bad config, not retryable) fails the task at once."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import (
    AirflowFailException,
)

from precast.errors import EXIT_BAD_CONFIG, EXIT_NOT_RETRYABLE
from precast.orchestration.connections import SPARK_MASTER

if TYPE_CHECKING:
    from airflow.sdk import Context

    from precast.config import Config

log = logging.getLogger(__name__)


# The steps that use Spark, and the job (file under jobs/, arguments) that runs each one.
SPARK_JOBS = {"extract": ("extract.py",),
              "validate_events": ("validate.py", "--dataset", "events"),
              "features": ("features.py",),
              "inference_features": ("inference_features.py",)}


def on_cluster(cfg: Config, step: str) -> bool:
    """Whether `step` runs through spark-submit: a Spark step on a non-local master."""
    return step in SPARK_JOBS and not cfg.engines.spark.master.startswith("local")


def spark_submit_path() -> str:
    """`$SPARK_HOME/bin/spark-submit` when SPARK_HOME names a Spark installation, else the
    one beside this Python (PySpark's wheel ships it), else from PATH."""
    home = os.environ.get("SPARK_HOME")
    candidates = [Path(home) / "bin" / "spark-submit"] if home else []
    candidates.append(Path(sys.executable).parent / "spark-submit")
    found = next((str(c) for c in candidates if c.exists()), shutil.which("spark-submit"))
    if found is None:
        raise AirflowFailException(f"spark-submit is neither in SPARK_HOME, beside "
                                   f"{sys.executable} nor on PATH")
    return found


def jobs_dir(context: Context) -> Path:
    """The `jobs/` folder beside the folder of the running DAG's file (the repository layout)."""
    return Path(context["dag"].fileloc).resolve().parent.parent / "jobs"


def submit_command(cfg: Config, step: str, day: date, jobs: Path) -> list[str]:
    """The spark-submit command line that runs `step` for `day` on the configured master."""
    spark = cfg.engines.spark
    job, *args = SPARK_JOBS[step]
    if not (jobs / job).is_file():
        raise AirflowFailException(f"no job file {jobs / job}: jobs/ must sit beside the DAGs "
                                   f"folder")
    conf = {**spark.conf, "spark.pyspark.python": sys.executable}
    return [spark_submit_path(), "--master", spark.master, "--name", f"{spark.app_name}-{step}",
            *[arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")],
            str(jobs / job), "--date", day.isoformat(), *args]


def submit_env(cfg: Config, step: str, overrides: dict[str, str],
               config: Path) -> dict[str, str]:
    """This process's environment plus what makes the job load the same config as the task
    (`config`: the use case's file)."""
    from precast.config import ENV_PREFIX

    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PRECAST_HOME": str(cfg.home.resolve()),
           "PRECAST_CONFIG": str(config)}
    # The job builds its session from its config: master and app name must match the command.
    fields = {**overrides, SPARK_MASTER: cfg.engines.spark.master,
              "engines.spark.app_name": f"{cfg.engines.spark.app_name}-{step}"}
    for dotted, value in fields.items():  # JSON strings are YAML strings: parsed back as is
        env[ENV_PREFIX + dotted.upper().replace(".", "__")] = json.dumps(value)
    return env


def run_submitted(cfg: Config, step: str, day: date, overrides: dict[str, str],
                  jobs: Path, config: Path) -> dict[str, Any]:
    """Run `step` via spark-submit, streaming its output to the log; its run record's result."""
    from precast import pipeline
    from precast.config import redact_command, redact_text

    command = submit_command(cfg, step, day, jobs)
    log.info("spark-submit %s for %s on %s: %s", step, day,
             redact_text(cfg.engines.spark.master), redact_command(command))
    tail: deque[str] = deque(maxlen=40)
    reason = ""
    with subprocess.Popen(command, env=submit_env(cfg, step, overrides, config),
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout or ():
            line = redact_text(line.rstrip())  # the job's output: a URL it printed too
            log.info("%s| %s", step, line)
            tail.append(line)
            if line.startswith("precast: "):  # the CLI's one-line reason
                reason = line.removeprefix("precast: ").removeprefix("run failed: ")
    if proc.returncode != 0:
        log.error("spark-submit %s exited %d; last lines:\n%s", step, proc.returncode,
                  "\n".join(tail))
        reason = reason or f"spark-submit exited {proc.returncode}"
        if proc.returncode in (EXIT_BAD_CONFIG, EXIT_NOT_RETRYABLE):
            raise AirflowFailException(f"{step} failed for {day}: {reason}")
        raise RuntimeError(f"{step} failed for {day}: {reason}")
    record = json.loads(pipeline.record_path(cfg, day, step).read_text())
    return dict(record["result"])
