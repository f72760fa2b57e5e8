"""precast_promote: override the champion gate, audited. Manual only.

Trigger with Params `action` (`force`: make `version`, default the current challenger, the
champion despite the gate; `pin`: freeze the current champion so the gate rejects every
challenger; `unpin`: release it) and `reason` (required). Who (the triggering user) and why
go into `champion_history`. Wiring only: the work lives in precast.steps.promote.
"""

from __future__ import annotations

from airflow.sdk import dag

from precast.orchestration import (
    DAG_DEFAULTS,
    PROMOTE_ACTION_PARAM,
    PROMOTE_REASON_PARAM,
    PROMOTE_VERSION_PARAM,
    promote_task,
)


@dag(
    dag_id="precast_promote",
    schedule=None,
    params={"action": PROMOTE_ACTION_PARAM, "version": PROMOTE_VERSION_PARAM,
            "reason": PROMOTE_REASON_PARAM},
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def precast_promote() -> None:
    promote_task()()


precast_promote()
