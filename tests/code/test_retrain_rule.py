"""The retrain rule of precast_monitor: alerts in k of the last n monitored windows, the
latest included, outside the cool-down after a champion change (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from precast import alerts, champions
from precast.alerts import Alert, MetricRow
from precast.config import Config
from precast.steps.monitor import retrain_decision

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
        alerts.write_metrics(cfg, _day(n), "1", "drift", [MetricRow("plan", "psi", 0.1)])
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
    champions.record(cfg.predictions_url, cfg.model.name, "2", decided_by="gate",
                     decision="gate", reason="retrained",
                     at=datetime(2026, 2, 27, 12, tzinfo=UTC))
    decision = retrain_decision(cfg, _day(2))
    assert not decision.retrain
    assert "the champion changed on 2026-02-27, within the 7-day cool-down" in decision.reason
    _monitored(cfg, 8, 9, alerted=(8, 9))
    assert retrain_decision(cfg, _day(9)).retrain
