"""The precast view's side of Airflow: the last runs of a use case's DAGs (from the metadata
database the api-server holds), who may see and act on them (Airflow's auth manager), and
triggering the audited `__rollback` / `__promote` DAGs as the signed-in user. Imported only
inside the api-server."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from precast.orchestration.use_cases import UseCase

ROLES = ("training", "predict", "monitor", "promote", "rollback")
TERMINAL = ("success", "failed")


@dataclass(frozen=True)
class RunInfo:
    """One DAG run as the view shows it."""

    dag_id: str
    run_id: str
    state: str
    start_date: datetime | None
    end_date: datetime | None
    conf: dict[str, Any]

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


def _info(run: Any) -> RunInfo:
    return RunInfo(run.dag_id, run.run_id, str(run.state or "queued"), run.start_date,
                   run.end_date, dict(run.conf or {}))


def last_runs(uc: UseCase) -> dict[str, RunInfo | None]:
    """The newest run of each of the use case's DAGs (None: never run), by role."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    out: dict[str, RunInfo | None] = {}
    with create_session() as session:
        for role in ROLES:
            newest = session.scalars(select(DagRun).where(DagRun.dag_id == uc.dag_id(role))
                                     .order_by(DagRun.run_after.desc(), DagRun.id.desc())
                                     .limit(1)).first()
            out[role] = None if newest is None else _info(newest)
    return out


def run(dag_id: str, run_id: str) -> RunInfo | None:
    """One run, None when there is no such run."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(select(DagRun).where(
            DagRun.dag_id == dag_id, DagRun.run_id == run_id)).first()
        return None if found is None else _info(found)


def trigger(dag_id: str, conf: dict[str, Any], user: str) -> RunInfo:
    """Start a manual run of `dag_id` with `conf` (its Params), recorded as `user`'s."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    created = trigger_dag(dag_id, triggered_by=DagRunTriggeredByType.UI,
                          triggering_user_name=user, conf=conf)
    if created is None:
        raise RuntimeError(f"Airflow started no run of {dag_id}")
    return _info(created)


def allowed(user: Any, dag_id: str, *, act: bool = False) -> bool:
    """May `user` see the DAG's runs (or, `act`, start one)? Airflow's auth manager decides."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import (
        DagAccessEntity,
        DagDetails,
    )

    return get_auth_manager().is_authorized_dag(
        method="POST" if act else "GET", user=user,
        access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id))
