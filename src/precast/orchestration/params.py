"""The DAGs' Params (snapshot date, tolerance, data-only, rollback and promote arguments) and
how a task resolves its run date: Param `snapshot_date`, else the date carried by the
triggering champion asset event, else the logical date, else the run's `run_after`."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from airflow.sdk import Context, Param

if TYPE_CHECKING:
    pass

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


def run_date(context: Context) -> date:
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


def data_only_reason(params: dict[str, Any], run_type: str, scheduled_runs: str) -> str | None:
    """Why a run stops after the data steps (train and gate skipped), or None when it trains:
    the `data_only` Param, or a scheduled run while `train.scheduled_runs` is data_only."""
    if params.get("data_only"):
        return "data_only run, the data steps ended with validate_features"
    if run_type == "scheduled" and scheduled_runs == "data_only":
        return ("scheduled run with train.scheduled_runs: data_only (training runs when "
                "the monitor DAG requests it, or by hand)")
    return None
