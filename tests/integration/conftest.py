"""A small generated world shared by the end-to-end tests: one home, one trained champion."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from precast import demo_data
from precast.config import Config, load_config

START = date(2026, 1, 1)
DAYS = 36
RUN_DATE = START + timedelta(days=DAYS - 1)
SMALL = {
    "features": {"short_window_days": 7, "long_window_days": 14, "label_horizon_days": 7,
                 "snapshot_interval_days": 7, "train_snapshots": 2},
    "train": {"num_boost_round": 150, "early_stopping_rounds": 15},
    "gate": {"tolerance": 0.01, "floors": {"roc_auc": 0.6}},
    "engines": {"spark": {"master": "local[2]"}},
    "demo": {"users": 1500, "days": DAYS, "seed": 11, "start_date": START.isoformat(),
             "corrupt_fraction": 0.003},
}


@dataclass(frozen=True)
class World:
    cfg: Config
    config_path: Path
    run_date: date


def make_world(root: Path, overrides: dict[str, Any] | None = None) -> World:
    """Write a small config under `root` and generate its raw logs."""
    data = {**SMALL, **(overrides or {}), "home": str(root / "home")}
    path = root / "precast.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path, environ={})
    d = cfg.demo
    demo_data.generate(cfg.lake_root, users=d.users, days=d.days, seed=d.seed,
                       start_date=d.start_date, corrupt_fraction=d.corrupt_fraction)
    return World(cfg, path, RUN_DATE)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, spark) -> World:
    """Generated logs with training and predict already run once for RUN_DATE."""
    from precast import pipeline

    w = make_world(tmp_path_factory.mktemp("world"))
    pipeline.run_chain(w.cfg, "training", w.run_date)
    pipeline.run_chain(w.cfg, "predict", w.run_date)
    return w
