"""Task factories for the DAGs in `dags/`: Airflow and the standard library only at import.

The DAG file generates five DAGs per configured use case (:func:`use_cases`: the folders or
config files in PRECAST_USE_CASES, else PRECAST_CONFIG, else ./precast.yaml), named
`<use case>__training`, `__predict`, `__monitor`, `__promote` and `__rollback`, with assets
of their own (`<use case>__champion`, `__predictions`, `__retrain`).
Each task resolves its run date (Param `snapshot_date`, else the date carried by the
triggering champion asset event, else the logical date, else the run's `run_after`) and
its use case's config: its file with `PRECAST_*` overrides, then the Airflow connections
and variable named in its `airflow.connections` / `airflow.lake_variable` where they exist.
A Spark step (SPARK_JOBS) on a master that is not `local...` runs as
`spark-submit jobs/<step>.py`; every other step runs in-process. Failures that retrying
cannot fix (a failed suite, a rejected challenger, a quarantine rate over the limit, bad
config) fail at once, across the spark-submit boundary too (CLI exit status 3).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.sdk import Asset, Connection, Param, Variable, task
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowNotFoundException,
    AirflowSkipException,
)

from precast.errors import EXIT_BAD_CONFIG, EXIT_NOT_RETRYABLE, retryable

if TYPE_CHECKING:
    from precast.config import Config

log = logging.getLogger(__name__)

# What every precast DAG shares (schedule, Params, tags and callbacks are each DAG's own).
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC), "catchup": False, "max_active_runs": 1}
# airflow.connections key -> the config field its connection overrides.
CONNECTION_FIELDS = {"predictions": "stores.predictions_url",
                     "mlflow": "stores.mlflow_tracking_uri",
                     "spark": "engines.spark.master"}
LAKE_FIELD = "stores.lake"  # what the airflow.lake_variable Variable overrides
SPARK_MASTER = "engines.spark.master"


@dataclass(frozen=True)
class UseCase:
    """What a use case's DAGs need at parse time: its name, config file and Airflow settings."""

    name: str
    config: Path
    schedules: dict[str, str]
    connections: dict[str, str]  # config field -> Airflow connection id
    lake_variable: str

    def dag_id(self, role: str) -> str:
        return f"{self.name}__{role}"

    def _asset(self, what: str) -> Asset:
        return Asset(name=f"{self.name}__{what}", uri=f"file:///precast/{self.name}/{what}")

    @property
    def champion_asset(self) -> Asset:
        """Emitted by the gate on promotion; schedules the use case's predict DAG."""
        return self._asset("champion")

    @property
    def predictions_asset(self) -> Asset:
        """Emitted by publish; schedules the use case's monitor DAG."""
        return self._asset("predictions")

    @property
    def retrain_asset(self) -> Asset:
        """Emitted by monitor when the retrain rule holds; schedules its training DAG."""
        return self._asset("retrain")

    def load(self, overrides: dict[str, str] | None = None) -> Config:
        """The use case's validated config (PRECAST_* overrides, then `overrides`)."""
        from precast.config import load_config

        cfg = load_config(self.config)
        return cfg.with_overrides(dict(overrides)) if overrides else cfg


def use_cases(environ: dict[str, str] | None = None) -> list[UseCase]:
    """Every configured use case (precast.use_case.configured: config files only, no Spark,
    Beam or MLflow imports)."""
    from precast.use_case import configured

    return [UseCase(cfg.name, path, dict(cfg.airflow.schedules),
                    {CONNECTION_FIELDS[k]: conn for k, conn in cfg.airflow.connections.items()},
                    cfg.airflow.lake_variable)
            for path, cfg in configured(environ)]
# The steps that use Spark, and the job (file under jobs/, arguments) that runs each one.
SPARK_JOBS = {"extract": ("extract.py",),
              "validate_events": ("validate.py", "--dataset", "events"),
              "features": ("features.py",),
              "inference_features": ("inference_features.py",)}
MODEL_STEPS = ("train", "gate")  # skipped by a `data_only` run

SNAPSHOT_PARAM = Param(
    None, type=["null", "string"], format="date", title="Snapshot date",
    description="Date (YYYY-MM-DD) to run for. Empty: the run's logical date, or the date "
                "of the champion that triggered the run.",
)
TOLERANCE_PARAM = Param(
    None, type=["null", "number"], minimum=0, title="Gate tolerance override",
    description="How much worse (on the gate metric, in its units) the challenger may be than "
                "the champion. Empty: gate.tolerance from the use case's config.",
)
DATA_ONLY_PARAM = Param(
    False, type="boolean", title="Data steps only",
    description="Stop after validate_features: extract, validate and build the features for "
                "the date, skip train and gate. For backfills over past dates: "
                "airflow backfill create --dag-run-conf '{\"data_only\": true}'.",
)

ROLLBACK_TARGET_PARAM = Param(
    "", type="string", minLength=3, title="Roll back to",
    description="snapshot:<snapshot id> serves that retained snapshot again; model:<version> "
                "serves that model version's newest retained snapshot and makes it the "
                "champion (model:previous: the champion before the current one). "
                "`precast snapshots` lists what is retained.",
)
ROLLBACK_REASON_PARAM = Param(
    "", type="string", minLength=3, title="Reason",
    description="Why (recorded with your user name in prediction_snapshots and "
                "prediction_activations).",
)


PROMOTE_ACTION_PARAM = Param(
    "force", type="string", enum=["force", "pin", "unpin"], title="Action",
    description="force: make the version below (empty: the current challenger) the champion "
                "despite the gate; pin: freeze the current champion (the gate rejects every "
                "challenger); unpin: release it.",
)
PROMOTE_VERSION_PARAM = Param(
    None, type=["null", "string"], title="Model version",
    description="For force: the registered version to promote. Empty: the challenger.",
)
PROMOTE_REASON_PARAM = Param(
    "", type="string", minLength=3, title="Reason",
    description="Why (recorded with your user name in champion_history).",
)


def run_date(context: dict[str, Any]) -> date:
    """The date this task works on (see the module docstring for the order)."""
    params = context.get("params") or {}
    if params.get("snapshot_date"):
        return date.fromisoformat(str(params["snapshot_date"]))
    for events in (context.get("triggering_asset_events") or {}).values():
        for event in events:
            if (event.extra or {}).get("snapshot_date"):
                return date.fromisoformat(event.extra["snapshot_date"])
    when: datetime = context.get("logical_date") or context["dag_run"].run_after
    return when.date()


def connection_value(field: str, conn: Connection) -> str:
    """The value for config field `field` that Airflow connection `conn` describes.

    Extra `{"url": ...}` wins; else a Spark master for `engines.spark.master`, else a URL
    by conn_type (postgres, sqlite, http, https). Raises ValueError for anything else.
    """
    url = conn.extra_dejson.get("url")
    if url:
        return str(url)
    if field == SPARK_MASTER:
        return spark_master(conn)
    kind = (conn.conn_type or "").lower()
    if kind in ("postgres", "postgresql"):
        return postgres_url(conn)
    if kind == "sqlite":
        return f"sqlite:///{conn.host or ''}"
    if kind in ("http", "https"):
        return http_url(conn)
    raise ValueError(f"conn_type {conn.conn_type!r} cannot give {field}; use postgres, sqlite, "
                     f"http or https, or set extra {{\"url\": \"...\"}}")


def spark_master(conn: Connection) -> str:
    """Airflow's Spark convention: host (`spark://h`, `yarn`, `local[*]`, `k8s://...`) + port."""
    host = (conn.host or "").strip()
    if not host:
        raise ValueError("a Spark connection needs a host (spark://host, yarn, local[*], ...)")
    if conn.port and "://" not in host:  # host "h", port 7077: a standalone master
        host = f"spark://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def postgres_url(conn: Connection) -> str:
    """A psycopg SQLAlchemy URL; login and password are escaped by SQLAlchemy."""
    from sqlalchemy.engine import URL

    return URL.create("postgresql+psycopg", username=conn.login or None,
                      password=conn.password or None, host=conn.host or None,
                      port=conn.port or None, database=conn.schema or None
                      ).render_as_string(hide_password=False)


def http_url(conn: Connection) -> str:
    """`scheme://[login[:password]@]host[:port][/schema]`; scheme from the conn_type.

    As in Airflow's HTTP provider, a schema of `http`/`https` is the scheme, and a host
    that already has a scheme is used as it is.
    """
    scheme, path = (conn.conn_type or "http").lower(), (conn.schema or "").strip("/")
    if path in ("http", "https"):
        scheme, path = path, ""
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        host = f"{scheme}://{auth + '@' if auth else ''}{host}"
        host += f":{conn.port}" if conn.port else ""
    return f"{host}/{path}" if path else host


def airflow_overrides(uc: UseCase) -> dict[str, str]:
    """Dotted config overrides from the use case's Airflow connections and variable that
    exist."""
    from precast.config import redact_url as redact

    out: dict[str, str] = {}
    for field, conn_id in uc.connections.items():
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            continue
        try:
            out[field] = connection_value(field, conn)
        except ValueError as exc:
            raise AirflowFailException(f"Airflow connection {conn_id}: {exc}") from None
        log.info("config %s = %s (Airflow connection %s)", field, redact(out[field]), conn_id)
    value = Variable.get(uc.lake_variable, default=None) if uc.lake_variable else None
    if value:
        out[LAKE_FIELD] = str(value)
        log.info("config %s = %s (Airflow variable %s)", LAKE_FIELD, redact(out[LAKE_FIELD]),
                 uc.lake_variable)
    return out


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


def jobs_dir(context: dict[str, Any]) -> Path:
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


def one_line_reason(step: str, day: date, exc: BaseException) -> str:
    """`<step> failed for <day>: <Error>: <first line of the message>`, redacted."""
    from precast.config import redact_text

    text = redact_text((str(exc).strip().splitlines() or [""])[0])
    if text.startswith(f"{step} failed for"):  # already phrased so (spark-submit path)
        return text
    return f"{step} failed for {day}: {type(exc).__name__}: {text}".rstrip(": ")


def data_only_reason(params: dict[str, Any], run_type: str, scheduled_runs: str) -> str | None:
    """Why a run stops after the data steps (train and gate skipped), or None when it trains:
    the `data_only` Param, or a scheduled run while `train.scheduled_runs` is data_only."""
    if params.get("data_only"):
        return "data_only run, the data steps ended with validate_features"
    if run_type == "scheduled" and scheduled_runs == "data_only":
        return ("scheduled run with train.scheduled_runs: data_only (training runs when "
                "the monitor DAG requests it, or by hand)")
    return None


def _execute(step: str, uc: UseCase, context: dict[str, Any]) -> dict[str, Any]:
    params = context.get("params") or {}
    from precast import pipeline
    from precast.runtime import prepare_environment

    prepare_environment()
    day = run_date(context)
    options = {"tolerance": params["tolerance"]} if params.get("tolerance") is not None else {}
    overrides = airflow_overrides(uc)
    try:
        cfg = uc.load(overrides)
        dag_run = context.get("dag_run")
        skip = step in MODEL_STEPS and data_only_reason(
            params, str(getattr(dag_run, "run_type", "") or ""), cfg.train.scheduled_runs)
        if skip:
            raise AirflowSkipException(f"{step} skipped: {skip}")
        if on_cluster(cfg, step):
            summary = run_submitted(cfg, step, day, overrides, jobs_dir(context), uc.config)
        else:
            log.info("precast step %s for %s (in-process)", step, day)
            summary = pipeline.to_jsonable(pipeline.run_step(cfg, step, day, **options))
    except AirflowSkipException:
        raise
    except Exception as exc:
        reason = one_line_reason(step, day, exc)
        log.error("%s", reason)  # the reason, in one line of the task log
        if not retryable(exc):
            raise AirflowFailException(reason) from exc
        raise
    for asset in context["task"].outlets or []:
        context["outlet_events"][asset].extra = {"snapshot_date": day.isoformat()}
    return {"run_date": day.isoformat(), "step": step, "result": summary}


def step_task(step: str, uc: UseCase, *, retries: int = 0, outlets: tuple[Asset, ...] = (),
              one_at_a_time: bool = False) -> Any:
    """A TaskFlow task that runs precast step `step` of use case `uc`; retries only where I/O
    can recover.

    `one_at_a_time`: never two instances at once across runs (backfills run dates in
    parallel; extract fills shared earlier days, the gate moves the one champion alias).
    """

    @task(task_id=step, retries=retries, retry_delay=timedelta(minutes=2),
          outlets=list(outlets), max_active_tis_per_dag=1 if one_at_a_time else None,
          doc_md=f"Runs `precast run {step}` for the run's date.")
    def _run(**context: Any) -> dict[str, Any]:
        return _execute(step, uc, context)

    return _run


def alert_on_failure(uc: UseCase) -> Callable[[Any], None]:
    """The DAG `on_failure_callback` of a use case's DAGs (see :func:`record_failure`)."""

    def callback(context: Any) -> None:
        record_failure(uc, context)

    return callback


def record_failure(uc: UseCase, context: Any) -> None:
    """A failed run becomes an alert of its use case (log line, `alerts` row, webhook), once
    per day and DAG; the use case's undelivered alerts are retried with it
    (precast.monitoring.alerts).
    Never raises: a broken alert must not hide the failure."""
    try:
        from precast.monitoring.alerts import Alert, raise_alerts
        from precast.runtime import prepare_environment

        prepare_environment()
        dag_run = context.get("dag_run")
        dag_id = str(getattr(dag_run, "dag_id", None) or "unknown DAG")
        try:
            day = run_date(context)
        except (KeyError, ValueError, TypeError):
            day = date.today()
        reason = str(context.get("reason") or context.get("exception") or "failed")
        raise_alerts(uc.load(airflow_overrides(uc)), [Alert(
            day, "dag_run_failed", dag_id,
            f"{dag_id} run {getattr(dag_run, 'run_id', '?')} failed: {reason}"[:1000],
            severity="critical")])
    except Exception:  # noqa: BLE001 - logged; the run's own failure stays visible
        log.exception("could not record the failed run as an alert")


def retrain_rule_task(uc: UseCase) -> Any:
    """The monitor DAG's last task: emits the use case's retrain asset (with the date) when
    the retrain rule holds, and is skipped (no event) with the reason when it does not."""
    asset = uc.retrain_asset

    @task(task_id="retrain_rule", retries=0, outlets=[asset],
          doc_md=f"Emits the {asset.name} asset when monitoring alerted in k of the last n "
                 "windows (monitor.retrain_*), outside the cool-down; else skipped.")
    def _run(**context: Any) -> dict[str, Any]:
        from dataclasses import asdict

        from precast.runtime import prepare_environment
        from precast.steps import monitor

        prepare_environment()
        day = run_date(context)
        cfg = uc.load(airflow_overrides(uc))
        decision = monitor.retrain_decision(cfg, day)
        log.info("%s", decision.reason)
        if not decision.retrain:
            raise AirflowSkipException(decision.reason)
        monitor.request_retrain(cfg, day, decision)
        context["outlet_events"][asset].extra = {"snapshot_date": day.isoformat(),
                                                 "reason": decision.reason}
        return {"run_date": day.isoformat(), **asdict(decision)}

    return _run


def _manual_task(task_id: str, doc: str, uc: UseCase,
                 work: Callable[[Config, dict[str, Any], str], Any]) -> Any:
    """A task of a manual DAG: `work(cfg, params, who)` as the triggering user; a refusal
    (a ValueError such as RollbackTargetError or PromoteError) fails it at once, with the
    reason."""

    @task(task_id=task_id, retries=0, doc_md=doc)
    def _run(**context: Any) -> dict[str, Any]:
        from dataclasses import asdict

        from precast.runtime import prepare_environment

        prepare_environment()
        dag_run = context.get("dag_run")
        user = getattr(dag_run, "triggering_user_name", None) or "airflow"
        try:
            result = work(uc.load(airflow_overrides(uc)), context.get("params") or {},
                          f"{user} ({uc.dag_id(task_id)})")
        except ValueError as exc:
            log.error("%s failed: %s", task_id, exc)
            raise AirflowFailException(f"{task_id} failed: {exc}") from exc
        return asdict(result)

    return _run


def rollback_task(uc: UseCase) -> Any:
    """The rollback DAG's task: serve the Param `target`, recording who and why."""

    def work(cfg: Config, params: dict[str, Any], who: str) -> Any:
        from precast.steps import rollback

        return rollback.run(cfg, str(params.get("target", "")), by=who,
                            reason=str(params.get("reason", "")))

    return _manual_task("rollback", "Runs `precast rollback --to TARGET --reason REASON` as the "
                        "triggering user.", uc, work)


def promote_task(uc: UseCase) -> Any:
    """The promote DAG's task: the Param `action` on the champion, recording who and why."""

    def work(cfg: Config, params: dict[str, Any], who: str) -> Any:
        from precast.steps import promote

        version = params.get("version")
        return promote.run(cfg, str(params.get("action", "")), by=who,
                           reason=str(params.get("reason", "")),
                           version=str(version) if version not in (None, "") else None)

    return _manual_task("promote", "Runs `precast promote --ACTION [--version V] --reason "
                        "REASON` as the triggering user.", uc, work)
