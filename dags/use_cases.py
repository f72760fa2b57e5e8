"""precast's DAGs: five per configured use case, generated from its config file.

Use cases: the folders or config files in PRECAST_USE_CASES (separated by `:`), else the
file in PRECAST_CONFIG, else ./precast.yaml (see precast.orchestration.use_cases). Each
`<use case>__*` DAG knows its use case; its schedules and Airflow connection ids come from
the use case's `airflow:` section. Wiring only: the work lives in precast.orchestration and
precast.steps, imported when a task runs.
"""

from __future__ import annotations

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, chain, dag

from precast.orchestration.params import (
    DATA_ONLY_PARAM,
    PROMOTE_ACTION_PARAM,
    PROMOTE_REASON_PARAM,
    PROMOTE_VERSION_PARAM,
    ROLLBACK_REASON_PARAM,
    ROLLBACK_TARGET_PARAM,
    SNAPSHOT_PARAM,
    TOLERANCE_PARAM,
)
from precast.orchestration.tasks import (
    alert_on_failure,
    promote_task,
    retrain_rule_task,
    rollback_task,
    step_task,
)
from precast.orchestration.use_cases import DAG_DEFAULTS, UseCase, use_cases

TRAINING = """{uc}__training: extract → validate events → features → validate features → train
→ gate, for use case `{uc}`.

On its schedule (airflow.schedules.training, UTC), by hand, and whenever `{uc}__monitor` asks
for a retraining (the `{uc}__retrain` asset: monitoring alerted in k of the last n windows).
A promoted challenger emits `{uc}__champion`, which schedules `{uc}__predict`. With
`data_only` the run stops after validate_features (train and gate are skipped): for backfills
over past dates, and for scheduled runs when `train.scheduled_runs: data_only` leaves
training to monitoring's requests. A failed run is an alert."""

PREDICT = """{uc}__predict: inference features → validate → score (Beam) → validate → publish,
for use case `{uc}`.

When a new champion is promoted (`{uc}__champion`) and on its schedule
(airflow.schedules.predict, UTC). Publishing repoints the use case's predictions_current view
and emits `{uc}__predictions`."""

MONITOR = """{uc}__monitor: drift, estimated and realised performance, alerts; asks for
retraining. For use case `{uc}`.

After every publish (`{uc}__predictions`) and by hand (Param snapshot_date). `monitor` stores
drift of every feature and the score and the realised metrics of the snapshot whose labels
just completed, and raises alerts; `retrain_rule` emits `{uc}__retrain`, which schedules
`{uc}__training`, when monitoring alerted in k of the last n windows outside the cool-down
(monitor.retrain_*), and is skipped otherwise."""

PROMOTE = """{uc}__promote: override use case `{uc}`'s champion gate, audited. Manual only.

Params `action` (`force`: make `version`, default the current challenger, the champion
despite the gate; `pin`: freeze the current champion so the gate rejects every challenger;
`unpin`: release it) and `reason` (required). Who (the triggering user) and why go into the
use case's `champion_history`."""

ROLLBACK = """{uc}__rollback: serve one of use case `{uc}`'s retained prediction snapshots
again (or roll forward). Manual only.

Params `target` (`snapshot:<id>` or `model:<version>`) and `reason`. Its predictions_current
view is repointed at once; for a model version the `champion` alias moves too. Who (the
triggering user) and why are recorded."""


def _dag(uc: UseCase, role: str, doc: str, params: dict[str, object],
         alerts: bool = True) -> dict[str, object]:
    """The arguments every DAG of a use case shares (the schedule is each DAG's own)."""
    return {"dag_id": uc.dag_id(role), "params": params,
            "doc_md": doc.format(uc=uc.name), "tags": ["precast", uc.name],
            **({"on_failure_callback": alert_on_failure(uc)} if alerts else {}), **DAG_DEFAULTS}


def training(uc: UseCase) -> None:
    timed = CronTriggerTimetable(uc.schedules["training"], timezone="UTC")

    @dag(schedule=AssetOrTimeSchedule(timetable=timed, assets=uc.retrain_asset),
         **_dag(uc, "training", TRAINING, {"snapshot_date": SNAPSHOT_PARAM,
                                           "tolerance": TOLERANCE_PARAM,
                                           "data_only": DATA_ONLY_PARAM}))
    def wiring() -> None:
        chain(
            step_task("extract", uc, retries=2, one_at_a_time=True)(),
            step_task("validate_events", uc)(),
            step_task("features", uc, retries=2)(),
            step_task("validate_features", uc)(),
            step_task("train", uc, retries=1)(),
            step_task("gate", uc, outlets=(uc.champion_asset,), one_at_a_time=True)(),
        )

    wiring()


def predict(uc: UseCase) -> None:
    timed = CronTriggerTimetable(uc.schedules["predict"], timezone="UTC")

    @dag(schedule=AssetOrTimeSchedule(timetable=timed, assets=uc.champion_asset),
         **_dag(uc, "predict", PREDICT, {"snapshot_date": SNAPSHOT_PARAM}))
    def wiring() -> None:
        chain(
            step_task("inference_features", uc, retries=2)(),
            step_task("validate_inference", uc)(),
            step_task("score", uc, retries=1)(),
            step_task("validate_predictions", uc)(),
            step_task("publish", uc, retries=2, outlets=(uc.predictions_asset,),
                      one_at_a_time=True)(),
        )

    wiring()


def monitor(uc: UseCase) -> None:
    @dag(schedule=uc.predictions_asset,
         **_dag(uc, "monitor", MONITOR, {"snapshot_date": SNAPSHOT_PARAM}))
    def wiring() -> None:
        chain(step_task("monitor", uc, retries=1)(), retrain_rule_task(uc)())

    wiring()


def promote(uc: UseCase) -> None:
    @dag(schedule=None, **_dag(uc, "promote", PROMOTE, {
        "action": PROMOTE_ACTION_PARAM, "version": PROMOTE_VERSION_PARAM,
        "reason": PROMOTE_REASON_PARAM}, alerts=False))
    def wiring() -> None:
        promote_task(uc)()

    wiring()


def rollback(uc: UseCase) -> None:
    @dag(schedule=None, **_dag(uc, "rollback", ROLLBACK, {
        "target": ROLLBACK_TARGET_PARAM, "reason": ROLLBACK_REASON_PARAM}, alerts=False))
    def wiring() -> None:
        rollback_task(uc)()

    wiring()


for use_case in use_cases():
    for make in (training, predict, monitor, promote, rollback):
        make(use_case)
