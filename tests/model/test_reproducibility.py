"""Reproducibility on CPU: same data version + config + seed ⇒ the same model bytes and
predictions; every registered version records what retraining needs, and
`precast retrain --like VERSION` rebuilds it (with real MLflow) without touching the registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from precast.cli.main import main
from precast.lake import Lake, manifest_path, read_json, write_json
from precast.model import artifact, registry, training
from tests.helpers import Trained


def cpu(trained: Trained, **overrides: object):
    return trained.world.cfg.with_overrides({"train.device": "cpu", **overrides})


def test_same_inputs_give_byte_identical_models_and_predictions(trained: Trained,
                                                                tmp_path: Path) -> None:
    first, spec, _ = training.train_model(cpu(trained), trained.train_rows)
    second, _, _ = training.train_model(cpu(trained), trained.train_rows)
    a = (artifact.save(tmp_path / "a", first, spec) / artifact.BOOSTER_FILE).read_bytes()
    b = (artifact.save(tmp_path / "b", second, spec) / artifact.BOOSTER_FILE).read_bytes()
    assert a == b
    assert a == artifact.model_bytes(first)
    np.testing.assert_array_equal(artifact.predict(first, trained.test_rows, spec),
                                  artifact.predict(second, trained.test_rows, spec))
    reseeded, _, _ = training.train_model(cpu(trained, **{"train.seed": 43}), trained.train_rows)
    assert artifact.model_bytes(reseeded) != a  # the comparison can tell models apart


def test_registered_model_is_what_training_produces(trained: Trained) -> None:
    ref = registry.by_alias(trained.world.cfg, registry.CHALLENGER)
    assert ref is not None
    registered = (registry.local_model(trained.world.cfg, ref) / artifact.BOOSTER_FILE).read_bytes()
    again, _, _ = training.train_model(cpu(trained), trained.train_rows)
    assert registered == artifact.model_bytes(again)


def test_each_version_records_what_retraining_needs(trained: Trained) -> None:
    import mlflow

    cfg = trained.world.cfg
    ref = registry.by_alias(cfg, registry.CHALLENGER)
    assert ref is not None
    manifest = read_json(manifest_path(Lake(cfg.lake_root).dataset("train",
                                                                            trained.world.run_date)))
    assert manifest is not None
    assert ref.tags["data_version"] == manifest["data_version"]
    assert ref.tags["run_date"] == trained.world.run_date.isoformat()
    assert ref.tags["seed"] == str(cfg.train.seed) and ref.tags["device"] == "cpu"
    assert ref.tags["code_version"] and ref.tags["xgboost_version"]
    assert ref.tags["model_sha256"] == artifact.sha256(trained.booster)
    recorded = mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/{training.TRAINING_CONFIG}")
    assert recorded == training.training_inputs(cfg)
    assert recorded["train"]["monotone"] == cfg.train.monotone
    params = mlflow.get_run(ref.run_id).data.params
    assert json.loads(params["monotone"]) == cfg.train.monotone


def registry_state(trained: Trained) -> tuple[list[str], dict[str, str]]:
    """Registered versions and aliases of the session's model."""
    cfg = trained.world.cfg
    mlflow_client = registry.client(cfg)
    versions = sorted(v.version for v in mlflow_client.search_model_versions(
        f"name='{cfg.model.name}'"))
    return versions, dict(mlflow_client.get_registered_model(cfg.model.name).aliases)


def retrain_like(trained: Trained, version: str, *extra: str) -> int:
    return main(["retrain", "--like", version, "--config", str(trained.world.config_path),
                 *extra])


def test_retrain_like_reproduces_the_version_and_registers_nothing(
        own_trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = registry_state(own_trained)
    version = own_trained.result.model_version
    assert retrain_like(own_trained, version, "--out", str(tmp_path / "again")) == 0
    out = capsys.readouterr().out
    assert f"retrained {own_trained.world.cfg.model.name} v{version}" in out
    assert "reproduced: the model bytes are identical" in out
    assert registry_state(own_trained) == before
    kept = (tmp_path / "again" / artifact.BOOSTER_FILE).read_bytes()
    assert kept == artifact.model_bytes(own_trained.booster)


@contextmanager
def recorded_seed(trained: Trained, seed: int) -> Iterator[None]:
    """The version's recorded training config with another seed (restored afterwards)."""
    cfg = trained.world.cfg
    run_id = registry.by_alias(cfg, registry.CHALLENGER).run_id
    original = training.training_inputs(cfg)
    changed = {**original, "train": {**original["train"], "seed": seed}}
    registry.client(cfg).log_dict(run_id, changed, training.TRAINING_CONFIG)
    try:
        yield
    finally:
        registry.client(cfg).log_dict(run_id, original, training.TRAINING_CONFIG)


def test_retrain_like_fails_clearly_when_the_bytes_differ(
        own_trained: Trained, capsys: pytest.CaptureFixture[str]) -> None:
    before = registry_state(own_trained)
    with recorded_seed(own_trained, own_trained.world.cfg.train.seed + 1):
        code = retrain_like(own_trained, own_trained.result.model_version)
    assert code == 1
    err = capsys.readouterr().err
    assert f"v{own_trained.result.model_version} NOT reproduced: the model bytes differ" in err
    assert "(roc_auc difference " in err  # the metric compared, named (regression: r2)
    assert registry_state(own_trained) == before


def test_retrain_like_refuses_changed_training_data(
        own_trained: Trained, capsys: pytest.CaptureFixture[str]) -> None:
    path = manifest_path(Lake(own_trained.world.cfg.lake_root).dataset(
        "train", own_trained.world.run_date))
    manifest = read_json(path)
    assert manifest is not None
    write_json(path, {**manifest, "data_version": "0123456789abcdef"})
    try:
        code = retrain_like(own_trained, own_trained.result.model_version)
    finally:
        write_json(path, manifest)
    assert code != 0
    err = capsys.readouterr().err
    assert "has data version 0123456789abcdef but" in err
    assert manifest["data_version"] in err


def test_retrain_like_an_unknown_version_fails(trained: Trained,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert retrain_like(trained, "999") != 0
    name = trained.world.cfg.model.name  # the use case's name by default (57eedfb)
    assert f"cannot retrain {name} v999" in capsys.readouterr().err
