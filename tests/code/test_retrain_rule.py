"""The retrain rule of precast_monitor: alerts in k of the last n monitored windows, the
latest included, outside the cool-down after a retraining request or a newly trained champion
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from precast.config import Config
from precast.model import registry
from precast.monitoring import alerts, model_metrics
from precast.monitoring.alerts import Alert
from precast.monitoring.model_metrics import MetricRow
from precast.steps.monitor import request_retrain, retrain_decision

D0 = date(2026, 3, 1)


def _day(n: int) -> date:
    return D0 + timedelta(days=n)


@pytest.fixture
def cfg(store_url: str, tmp_path: Path) -> Config:
    return Config(home=tmp_path / "home").with_overrides({
        "stores.predictions_url": store_url, "monitor.retrain_k": 2, "monitor.retrain_n": 3,
        "monitor.retrain_cooldown_days": 7})


def _monitored(cfg: Config, *days: int, alerted: tuple[int, ...] = ()) -> None:
    for n in days:
        model_metrics.write_metrics(cfg, _day(n), "1", "drift", [MetricRow("plan", "psi", 0.1)])
    alerts.raise_alerts(cfg, [Alert(_day(n), "drift_psi_max", "plan", "drift", 0.3, 0.2)
                              for n in alerted])


def test_k_of_the_last_n_windows_with_the_latest(cfg: Config) -> None:
    _monitored(cfg, 0, 1, 2, 3, alerted=(0, 1))
    decision = retrain_decision(cfg, _day(3))
    assert not decision.retrain  # the latest window is clean
    assert decision.windows == (_day(3), _day(2), _day(1))
    assert decision.violated == (_day(1),)
    _monitored(cfg, 4, alerted=(4,))
    decision = retrain_decision(cfg, _day(4))
    assert not decision.retrain and decision.violated == (_day(4),)  # 1 of the last 3
    _monitored(cfg, 5, alerted=(5,))
    decision = retrain_decision(cfg, _day(5))
    assert decision.retrain, decision.reason
    assert decision.reason == ("retrain: 2 of the last 3 windows alerted (rule: 2 of 3, the "
                               "latest included)")
    assert not retrain_decision(cfg, _day(6)).retrain  # day 6 was not monitored


def test_no_second_retraining_within_the_cool_down(cfg: Config) -> None:
    _monitored(cfg, 0, 1, 2, alerted=(1, 2))
    decision = retrain_decision(cfg, _day(2))
    assert decision.retrain, decision.reason
    assert request_retrain(cfg, _day(2), decision)
    assert not request_retrain(cfg, _day(2), decision)  # recorded once per day
    (alert,) = [a for a in alerts.alerts_of(cfg) if a["rule"] == "retrain_requested"]
    assert alert["subject"] == cfg.model.name and alert["message"].endswith(decision.reason)
    assert retrain_decision(cfg, _day(2)).retrain  # a rerun of that day decides the same
    _monitored(cfg, 3, 4, alerted=(3, 4))
    decision = retrain_decision(cfg, _day(4))
    assert not decision.retrain and decision.violated == (_day(4), _day(3), _day(2))
    assert decision.reason.endswith(f"but a retraining was requested on {_day(2)}, within "
                                    "the 7-day cool-down")
    _monitored(cfg, 9, alerted=(9,))  # 9 − 2 = 7 days: the cool-down is over
    assert retrain_decision(cfg, _day(9)).retrain


def test_a_champion_trained_within_the_cool_down_waits(cfg: Config) -> None:
    """The cool-down also counts from the champion's training date (a run date, as the
    windows are: a replayed history decides as the live run did)."""
    client = registry.client(cfg)
    client.create_registered_model(cfg.model.name)
    version = client.create_model_version(cfg.model.name, "file:///nowhere",
                                          tags={"run_date": _day(1).isoformat()}).version
    registry.set_alias(cfg, registry.CHAMPION, str(version))
    _monitored(cfg, 5, 6, 7, alerted=(6, 7))
    decision = retrain_decision(cfg, _day(7))
    assert not decision.retrain
    assert decision.reason.endswith(f"but champion v{version} was trained on {_day(1)}, "
                                    "within the 7-day cool-down")
    _monitored(cfg, 8, alerted=(8,))
    assert retrain_decision(cfg, _day(8)).retrain
