"""precast_predict: inference features → validate → score (Beam) → validate → publish.

Runs when a new champion is promoted (champion asset) and daily. Publishing emits
the predictions asset. Wiring only: the work lives in precast.orchestration and steps.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, chain, dag

from precast.orchestration import (
    CHAMPION_ASSET,
    DAG_DEFAULTS,
    PREDICTIONS_ASSET,
    SNAPSHOT_PARAM,
    alert_on_failure,
    step_task,
)


@dag(
    dag_id="precast_predict",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=CHAMPION_ASSET
    ),
    params={"snapshot_date": SNAPSHOT_PARAM},
    on_failure_callback=alert_on_failure,
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def precast_predict() -> None:
    chain(
        step_task("inference_features", retries=2)(),
        step_task("validate_inference")(),
        step_task("score", retries=1)(),
        step_task("validate_predictions")(),
        step_task("publish", retries=2, outlets=(PREDICTIONS_ASSET,), one_at_a_time=True)(),
    )


precast_predict()
