"""Task factories for the DAGs in `dags/`: a precast step as a TaskFlow task (in process, or
through spark-submit), the retrain rule, the manual rollback and promote tasks, and a failed
run as an alert. Failures that retrying cannot fix (precast.errors.NotRetryable) fail the task
at once, across the spark-submit boundary too (CLI exit status 3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import Asset, Context, task
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowSkipException,
)

from precast.errors import retryable
from precast.orchestration.connections import airflow_overrides
from precast.orchestration.params import MODEL_STEPS, data_only_reason, run_date
from precast.orchestration.submit import jobs_dir, on_cluster, run_submitted
from precast.orchestration.use_cases import UseCase

if TYPE_CHECKING:
    from precast.config import Config

log = logging.getLogger(__name__)


def one_line_reason(step: str, day: date, exc: BaseException) -> str:
    """`<step> failed for <day>: <Error>: <first line of the message>`, redacted."""
    from precast.config import redact_text

    text = redact_text((str(exc).strip().splitlines() or [""])[0])
    if text.startswith(f"{step} failed for"):  # already phrased so (spark-submit path)
        return text
    return f"{step} failed for {day}: {type(exc).__name__}: {text}".rstrip(": ")


def _execute(step: str, uc: UseCase, context: Context) -> dict[str, Any]:
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
        if step == PREDICT_FIRST_STEP and (why := _nothing_to_score(cfg, uc)):
            raise AirflowSkipException(f"{step} skipped: {why}")
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


PREDICT_FIRST_STEP = "inference_features"


def _nothing_to_score(cfg: Config, uc: UseCase) -> str | None:
    """Why a predict run has nothing to do (no champion yet: the run that `airflow up` starts
    before any training), or None."""
    from precast.model import registry

    if registry.by_alias(cfg, registry.CHAMPION) is not None:
        return None
    return (f"use case {uc.name} has no champion yet; {uc.dag_id('training')} promotes one, "
            f"and the promotion starts {uc.dag_id('predict')}")


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
        return _execute(step, uc, cast("Context", context))

    return _run


def alert_on_failure(uc: UseCase) -> Callable[[Any], None]:
    """The DAG `on_failure_callback` of a use case's DAGs (see :func:`record_failure`)."""

    def callback(context: Context) -> None:
        record_failure(uc, context)

    return callback


def record_failure(uc: UseCase, context: Context) -> None:
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
        day = run_date(cast("Context", context))
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
