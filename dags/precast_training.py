"""precast_training: extract → validate events → features → validate features → train → gate.

Daily, manual, and whenever precast_monitor asks for a retraining (the precast_retrain
asset: monitoring alerted in k of the last n windows). A promoted challenger emits the
champion asset, which schedules precast_predict. With `data_only` the run stops after
validate_features (train and gate are skipped): for backfills over past dates, and for the
daily runs when `train.scheduled_runs: data_only` leaves training to monitoring's requests.
A failed run is an alert. Wiring only: the work lives in precast.orchestration and precast.steps.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, chain, dag

from precast.orchestration import (
    CHAMPION_ASSET,
    DAG_DEFAULTS,
    DATA_ONLY_PARAM,
    RETRAIN_ASSET,
    SNAPSHOT_PARAM,
    TOLERANCE_PARAM,
    alert_on_failure,
    step_task,
)


@dag(
    dag_id="precast_training",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=RETRAIN_ASSET
    ),
    params={"snapshot_date": SNAPSHOT_PARAM, "tolerance": TOLERANCE_PARAM,
            "data_only": DATA_ONLY_PARAM},
    on_failure_callback=alert_on_failure,
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def precast_training() -> None:
    chain(
        step_task("extract", retries=2, one_at_a_time=True)(),
        step_task("validate_events")(),
        step_task("features", retries=2)(),
        step_task("validate_features")(),
        step_task("train", retries=1)(),
        step_task("gate", outlets=(CHAMPION_ASSET,), one_at_a_time=True)(),
    )


precast_training()
