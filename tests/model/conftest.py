"""The session's model, as the pipeline's own steps trained and registered it.

Generated logs → extract → features → train (a real MLflow run and registered version) →
gate, in the session's `world`: every model test judges what production trains and
registers, and no second world is built for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from precast import pipeline
from precast.data import datasets
from precast.lake import Lake
from precast.model import artifact, registry
from precast.steps import train
from tests.helpers import Trained, World, copy_world, mlflow_runs_resolved_afresh


@pytest.fixture(scope="session")
def trained(world: World) -> Trained:
    """The world's first training run (its record), its registered booster and datasets."""
    record = json.loads(pipeline.record_path(world.cfg, world.run_date, "train").read_text())
    result = train.TrainResult(**record["result"])
    ref = registry.by_alias(world.cfg, registry.CHALLENGER)
    assert ref is not None and ref.version == result.model_version == "1"
    booster, spec = artifact.load(registry.local_model(world.cfg, ref))
    lake = Lake(world.cfg.lake_root)
    train_rows, _ = datasets.load_dataset(lake.dataset("train", world.run_date))
    test_rows, _ = datasets.load_dataset(lake.dataset("test", world.run_date))
    return Trained(world, result, booster, spec, train_rows, test_rows)


@pytest.fixture
def own_trained(trained: Trained, tmp_path: Path) -> Iterator[Trained]:
    """The session's model in a private copy of its world, for tests that change the
    registry or the lake."""
    with mlflow_runs_resolved_afresh():
        yield replace(trained, world=copy_world(trained.world, tmp_path / "own-world"))
