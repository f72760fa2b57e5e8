"""precast_monitor: drift, estimated and realised performance, alerts; asks for retraining.

Runs after every publish (the precast_predictions asset, so daily with the predict chain)
and by hand (Param snapshot_date). `monitor` stores drift of every feature and the score,
the estimated ROC AUC and the realised metrics of the snapshot whose labels just completed
(model_metrics), and raises alerts; `retrain_rule` emits the precast_retrain asset, which
schedules precast_training, when monitoring alerted in k of the last n windows outside the
cool-down (monitor.retrain_*), and is skipped otherwise. Wiring only: the work lives in
precast.steps.monitor.
"""

from __future__ import annotations

from airflow.sdk import chain, dag

from precast.orchestration import (
    DAG_DEFAULTS,
    PREDICTIONS_ASSET,
    SNAPSHOT_PARAM,
    alert_on_failure,
    retrain_rule_task,
    step_task,
)


@dag(
    dag_id="precast_monitor",
    schedule=PREDICTIONS_ASSET,
    params={"snapshot_date": SNAPSHOT_PARAM},
    on_failure_callback=alert_on_failure,
    doc_md=__doc__,
    **DAG_DEFAULTS,
)
def precast_monitor() -> None:
    chain(step_task("monitor", retries=1)(), retrain_rule_task()())


precast_monitor()
