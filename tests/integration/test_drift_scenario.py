"""Proof by scenario: a behaviour drift is noticed, retrained away and republished, all
through the DAGs (`dag.test()`), day by day; a control world without drift raises no drift
alert.

The worlds are generated logs of 4,000 users (seed 11). In the drift world the behaviour
changes from day DRIFT on (activity up, more TV events, the pre-churn signal moves to page
views, plays and the web device). Training is on request (`train.scheduled_runs:
data_only`): the daily churn__training run prepares the data only, so the champion trained
on the first day stays until monitoring asks for a retraining.

Every simulated day runs what the deployment runs: the daily churn__training run (data
steps: dag.test makes manual runs, so `data_only` stands in for the scheduled run under that
setting), churn__predict, then churn__monitor on the predictions. When monitor's
`retrain_rule` emits the churn__retrain asset, Airflow's scheduler query
(DagModel.dags_needing_dagruns) must find churn__training due, and churn__training runs
for the event's date; a promoted challenger is republished by churn__predict and monitored
again. The records in `model_metrics` and `alerts` are asserted, and the timeline is written
to .precast/test-artifacts/drift-scenario/timeline.json.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.helpers import (
    FAST_START_SPARK,
    REPO,
    Mailbox,
    World,
    consume_queue,
    due_dags,
    make_world,
    run_ok,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # each world: 5-10 min

START = date(2026, 1, 1)
FIRST = 18  # day index of the first training (enough history for its three train snapshots)
DRIFT = 22  # day index from which the drift world's behaviour drifts
LAST = 35  # the last simulated day index
COOL_DOWN = 8
ARTIFACTS = REPO / ".precast" / "test-artifacts" / "drift-scenario"


def _day(index: int) -> date:
    return START + timedelta(days=index)


def _world(root: Path, mailbox: Mailbox, drift_day: int | None) -> World:
    root.mkdir(parents=True)
    return make_world(root, {
        "features": {"short_window_days": 3, "long_window_days": 7, "label_horizon_days": 3,
                     "snapshot_interval_days": 2, "train_snapshots": 3},
        "train": {"num_boost_round": 150, "early_stopping_rounds": 15,
                  "scheduled_runs": "data_only"},
        "gate": {"tolerance": 0.01, "floors": {"roc_auc": 0.6}},
        "monitor": {"min_roc_auc": 0.78, "retrain_k": 2, "retrain_n": 3,
                    "retrain_cooldown_days": COOL_DOWN, "email_to": ["ml-oncall@example.com"],
                    "smtp_conn_id": mailbox.conn_id},
        "engines": {"spark": {"master": "local[2]", "conf": FAST_START_SPARK}},
        "demo": {"users": 4000, "days": LAST + 1, "seed": 11, "start_date": START.isoformat(),
                 "corrupt_fraction": 0.002, "drift_day": drift_day},
    })


@dataclass
class Deployment:
    """The DAGs of one world under dag.test(), and what happened on each day."""

    dagbag: Any
    world: World
    timeline: dict[str, list[str]] = field(default_factory=dict)
    retrain_runs: dict[date, Any] = field(default_factory=dict)

    def note(self, day: date, what: str) -> None:
        self.timeline.setdefault(day.isoformat(), []).append(what)

    def run(self, dag_id: str, day: date, **conf: Any) -> Any:
        # Every Param of churn__training given: dag.test() reuses the DAG object, and a Param
        # that an earlier run's conf set would otherwise carry over to the next run.
        if dag_id == "churn__training":
            conf.setdefault("data_only", False)
        return self.dagbag.dags[dag_id].test(run_conf={"snapshot_date": day.isoformat(), **conf})

    def live_day(self, day: date) -> None:
        """The daily runs of `day`, and the retraining monitoring asks for."""
        daily = self.run("churn__training", day, data_only=True)
        assert daily.state == "success"
        assert _states(daily)["train"] == _states(daily)["gate"] == "skipped"
        assert self.run("churn__predict", day).state == "success"
        monitor = self.run("churn__monitor", day)
        assert monitor.state == "success"
        rule = _states(monitor)["retrain_rule"]
        due = "churn__training" in due_dags()
        assert due == (rule == "success"), (day, rule)
        if rule != "success":
            assert rule == "skipped"
            return
        (extra,) = _retrain_events(monitor)
        assert extra["snapshot_date"] == day.isoformat() and extra["reason"].startswith("retrain")
        self.note(day, f"monitor asked for a retraining ({extra['reason']})")
        consume_queue("churn__training")  # what the scheduler does when it creates the run
        retrain = self.run("churn__training", date.fromisoformat(extra["snapshot_date"]))
        self.retrain_runs[day] = retrain
        if retrain.state != "success":
            assert _states(retrain)["gate"] == "failed"
            self.note(day, "the retrained challenger was rejected; the champion stays")
            return
        self.note(day, "the retrained challenger was promoted")
        assert self.run("churn__predict", day).state == "success"  # on the champion asset
        self.note(day, "predictions republished by the new champion")
        assert self.run("churn__monitor", day).state == "success"  # on the predictions asset


def _states(run: Any) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(sa.select(TaskInstance.task_id, TaskInstance.state).where(
            TaskInstance.dag_id == run.dag_id, TaskInstance.run_id == run.run_id)).all()
    return {task: str(state) for task, state in rows}


def _retrain_events(run: Any) -> list[dict[str, Any]]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [dict(extra) for (extra,) in session.execute(
            sa.select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "churn__retrain", AssetEvent.source_run_id == run.run_id,
                   AssetEvent.source_dag_id == "churn__monitor"))]


def _table(world: World, name: str) -> pd.DataFrame:
    from precast import store

    engine = store.make_engine(world.cfg.predictions_url)
    try:
        with engine.connect() as conn:
            out = pd.read_sql(sa.text(f"SELECT * FROM {name}"), conn)  # noqa: S608 - fixed names
    finally:
        engine.dispose()
    out["snapshot_date"] = pd.to_datetime(out["snapshot_date"]).dt.date
    return out


@pytest.fixture
def deploy(dags_of: Any, airflow_db: None, spark: Any, mailbox: Mailbox, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Build a world (drift day or None) with its first champion, published and monitored."""

    def _deploy(drift_day: int | None) -> Deployment:
        world = _world(tmp_path / ("drift" if drift_day is not None else "control"), mailbox,
                       drift_day)
        monkeypatch.setenv("PRECAST_HOME", str(world.cfg.home))
        consume_queue("churn__training")  # nothing queued from other tests
        deployment = Deployment(dags_of(world.config_path), world)
        first = deployment.run("churn__training", _day(FIRST))  # a person trains the first
        assert first.state == "success"
        # Asset events queue runs only for unpaused DAGs: unpaused, as in a deployment.
        run_ok([sys.executable, "-m", "airflow", "dags", "unpause", "churn__training"])
        deployment.note(_day(FIRST), "first champion trained and promoted")
        assert deployment.run("churn__predict", _day(FIRST)).state == "success"
        assert deployment.run("churn__monitor", _day(FIRST)).state == "success"
        return deployment

    yield _deploy


@pytest.mark.slow(minutes=13)
def test_drift_is_flagged_retrained_and_republished(deploy: Any, mailbox: Mailbox) -> None:
    from precast import store
    from precast.gate import champions
    from precast.model import registry

    scenario: Deployment = deploy(DRIFT)
    world, cfg = scenario.world, scenario.world.cfg
    stale = registry.by_alias(cfg, registry.CHAMPION)
    assert stale is not None
    for index in range(FIRST + 1, LAST + 1):
        scenario.live_day(_day(index))

    metrics, alerts = _table(world, "model_metrics"), _table(world, "alerts")
    drift_alerts = alerts[alerts["rule"].str.startswith("drift_")]
    flagged = min(drift_alerts["snapshot_date"])
    for day, group in drift_alerts.groupby("snapshot_date"):
        scenario.note(day, "drift alerts: " + ", ".join(sorted(set(group["subject"]))))

    # Drift is flagged within the first two snapshots from the drift day, never before it.
    assert _day(DRIFT) <= flagged <= _day(DRIFT + 1), scenario.timeline
    # Drift of every feature and the score is stored on every monitored day, alert or not.
    drift_rows = metrics[(metrics["kind"] == "drift") & (metrics["metric"] == "psi")]
    assert set(drift_rows["snapshot_date"]) == {_day(i) for i in range(FIRST, LAST + 1)}
    features = set(stale.tags["features"].split(",")) | {"score"}
    assert all(set(g["feature"]) == features for _, g in drift_rows.groupby(
        ["snapshot_date", "model_version"]))
    tenure = drift_rows[drift_rows["feature"] == "tenure_days"]
    assert (tenure["value"] > cfg.monitor.psi_max).all()  # stored, never alerted (config)
    assert "tenure_days" not in set(drift_alerts["subject"])

    # The stale champion's live ROC AUC decays once the drifted snapshots are labelled; the
    # estimate from its own scores cannot see it, and the gap is on record.
    live = metrics[(metrics["kind"] == "performance") & (metrics["metric"] == "roc_auc")
                   & (metrics["slice"] == "") & (metrics["model_version"] == stale.version)]
    live = live.set_index("snapshot_date")["value"]
    before = live[[d < _day(DRIFT) for d in live.index]]
    after = live[[d >= _day(DRIFT + 3) for d in live.index]]
    assert len(before) >= 3 and len(after) >= 4
    assert after.mean() < before.mean() - 0.05, (before.to_dict(), after.to_dict())
    assert after.max() < before.min()
    estimates = metrics[(metrics["kind"] == "estimate") & (metrics["metric"] == "roc_auc")]
    assert set(estimates["snapshot_date"]) >= set(live.index)
    low = alerts[alerts["rule"] == "live_roc_auc_below_min"]
    assert len(low) and min(low["snapshot_date"]) >= _day(DRIFT)
    for day in sorted(set(low["snapshot_date"])):
        scenario.note(day, "live ROC AUC of this snapshot under the minimum (labels arrived "
                           f"{cfg.features.label_horizon_days} days later)")

    # Monitoring asked for retraining twice: the cool-down held one drift to one request
    # until it ended, and the second challenger, trained on labelled drifted data, won.
    requests = sorted(alerts.loc[alerts["rule"] == "retrain_requested", "snapshot_date"])
    assert requests == sorted(scenario.retrain_runs), scenario.timeline
    assert len(requests) == 2 and (requests[1] - requests[0]).days >= COOL_DOWN
    assert requests[0] <= flagged + timedelta(days=COOL_DOWN)
    promoted_on = requests[1]
    assert scenario.retrain_runs[promoted_on].state == "success"
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None and champion.version != stale.version
    assert champion.tags["run_date"] == promoted_on.isoformat()
    history = champions.history(cfg.predictions_url, cfg.model.name)
    assert history[0].model_version == champion.version and history[0].decision == "gate"
    gate = _gate_metrics(cfg, champion)
    assert gate["challenger"] > gate["champion"] + 0.05, gate

    # Republished by the new champion; its own reference ends the drift alerts.
    republished = [(s.snapshot_date, s.model_version) for s in store.snapshots(
        cfg.predictions_url)]
    assert (promoted_on, champion.version) in republished
    served = store.current(cfg.predictions_url)
    assert served is not None and served.model_version == champion.version
    assert served.snapshot_date == _day(LAST)
    after_promotion = drift_alerts[drift_alerts["snapshot_date"] > promoted_on]
    assert after_promotion.empty, after_promotion[["snapshot_date", "subject"]]

    # Every new alert was e-mailed (one message per monitor run that raised any).
    subjects = [m["Subject"] for m in mailbox.messages]
    assert any(flagged.isoformat() in s and "drift_psi_max" in s for s in subjects), subjects
    assert sum("retrain_requested" in s for s in subjects) == 2, subjects

    timeline = {"drift_day": _day(DRIFT).isoformat(), "flagged": flagged.isoformat(),
                "retrain_requested": [d.isoformat() for d in requests],
                "promoted": promoted_on.isoformat(), "gate_roc_auc": gate,
                "live_roc_auc_stale_champion": {str(k): round(v, 4) for k, v in live.items()},
                "days": dict(sorted(scenario.timeline.items()))}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "timeline.json").write_text(json.dumps(timeline, indent=2))
    print(json.dumps(timeline, indent=2))


def _gate_metrics(cfg: Any, champion: Any) -> dict[str, float]:
    """Challenger and champion ROC AUC on the same test set, from the gate's decision."""
    from precast.model import registry

    client = registry.client(cfg)
    path = client.download_artifacts(champion.run_id, "gate/gate_decision.json")
    decision = json.loads(Path(path).read_text())
    overall = [r for r in decision["rules"] if r["scope"] == "overall"
               and r["metric"] == "roc_auc" and r["champion"] is not None]
    (rule,) = overall
    return {"challenger": round(rule["value"], 4), "champion": round(rule["champion"], 4)}


@pytest.mark.slow(minutes=5)
def test_without_drift_no_drift_alert_and_no_retraining(deploy: Any) -> None:
    control: Deployment = deploy(None)
    # Through the last day by which the drift world must have flagged its drift.
    for index in range(FIRST + 1, DRIFT + 2):
        control.live_day(_day(index))
    alerts = _table(control.world, "alerts")
    assert not alerts["rule"].str.startswith("drift_").any(), alerts
    assert "retrain_requested" not in set(alerts["rule"]) and not control.retrain_runs
    metrics = _table(control.world, "model_metrics")
    psi = metrics[(metrics["kind"] == "drift") & (metrics["metric"] == "psi")]
    assert len(set(psi["snapshot_date"])) == DRIFT + 2 - FIRST
