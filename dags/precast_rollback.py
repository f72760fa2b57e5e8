"""precast_rollback: serve a retained prediction snapshot again (or roll forward). Manual only.

Trigger with Params `target` (`snapshot:<id>` or `model:<version>`) and `reason`. The view
`predictions_current` is repointed at once; for a model version the `champion` alias moves too.
Who (the triggering user) and why are recorded. Wiring only: the work lives in
precast.steps.rollback.
"""

from __future__ import annotations

from airflow.sdk import dag

from precast.orchestration import (
    DAG_DEFAULTS,
    ROLLBACK_REASON_PARAM,
    ROLLBACK_TARGET_PARAM,
    rollback_task,
)


@dag(
    dag_id="precast_rollback",
    schedule=None,
    params={"target": ROLLBACK_TARGET_PARAM, "reason": ROLLBACK_REASON_PARAM},
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def precast_rollback() -> None:
    rollback_task()()


precast_rollback()
