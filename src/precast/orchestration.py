"""Task factories for the DAGs in `dags/`: Airflow and the standard library only at import.

Each task resolves its run date (Param `snapshot_date`, else the date carried by the
triggering champion asset event, else the logical date, else the run's `run_after`),
then runs one precast step in-process with the config named by PRECAST_CONFIG
(default `precast.yaml`). Failures that retrying cannot fix (a failed suite, a
rejected challenger, a quarantine rate over the limit, bad config) fail at once.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from airflow.sdk import Asset, Param, task
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

CHAMPION_ASSET = Asset(name="precast_champion", uri="file:///precast/champion")
PREDICTIONS_ASSET = Asset(name="precast_predictions", uri="file:///precast/predictions")
NOT_RETRYABLE = ("ValidationFailed", "ChallengerRejectedError", "QuarantineRateExceeded",
                 "FeatureMismatchError", "ConfigError", "NotEnoughHistoryError")

SNAPSHOT_PARAM = Param(
    None, type=["null", "string"], format="date", title="Snapshot date",
    description="Date (YYYY-MM-DD) to run for. Empty: the run's logical date, or the date "
                "of the champion that triggered the run.",
)
TOLERANCE_PARAM = Param(
    None, type=["null", "number"], minimum=0, maximum=1, title="Gate tolerance override",
    description="How much worse (on the gate metric) the challenger may be than the champion. "
                "Empty: gate.tolerance from precast.yaml.",
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
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date()


def _execute(step: str, context: dict[str, Any]) -> dict[str, Any]:
    from precast import pipeline
    from precast.config import load_config
    from precast.runtime import prepare_environment

    prepare_environment()
    day = run_date(context)
    params = context.get("params") or {}
    options = {"tolerance": params["tolerance"]} if params.get("tolerance") is not None else {}
    log.info("precast step %s for %s", step, day)
    try:
        result = pipeline.run_step(load_config(), step, day, **options)
    except Exception as exc:
        if type(exc).__name__ in NOT_RETRYABLE:
            raise AirflowFailException(f"{step} failed for {day}: {exc}") from exc
        raise
    for asset in context["task"].outlets or []:
        context["outlet_events"][asset].extra = {"snapshot_date": day.isoformat()}
    summary: dict[str, Any] = pipeline.to_jsonable(result)
    return {"run_date": day.isoformat(), "step": step, "result": summary}


def step_task(step: str, *, retries: int = 0, outlets: tuple[Asset, ...] = ()) -> Any:
    """A TaskFlow task that runs precast step `step`; retries only where I/O can recover."""

    @task(task_id=step, retries=retries, retry_delay=timedelta(minutes=2),
          outlets=list(outlets), doc_md=f"Runs `precast run {step}` for the run's date.")
    def _run(**context: Any) -> dict[str, Any]:
        return _execute(step, context)

    return _run
