"""A regression use case through the real train and gate steps: XGBoost trains on a tiny
generated dataset (a customer's spend), MLflow tracks and registers each version, and the
champion gate compares versions on RMSE, lower being better.

The datasets are written to the lake by hand (no Spark, no world): features, a real-number
label and the manifest the features step would write.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from precast.config import Config
from precast.data import datasets
from precast.gate import card as model_card
from precast.lake import Lake, manifest_path, write_json
from precast.model import artifact, registry, spark_train
from precast.steps import gate, train

RUN_DATE = date(2026, 3, 1)
SPEND = "spend over the next 30 days"


def _spend(users: int, snapshot: date, seed: int) -> pd.DataFrame:
    """One snapshot: two numeric features, a plan, and spend = a function of them + noise."""
    rng = np.random.default_rng(seed)
    visits, basket = rng.poisson(6, users).astype("float64"), rng.gamma(4, 5, users)
    plan = rng.choice(["free", "pro"], users)
    spend = 2 * visits * basket / 10 + np.where(plan == "pro", 15, 0) + rng.normal(0, 3, users)
    return pd.DataFrame({"entity_id": [f"c{seed}-{i:04d}" for i in range(users)],
                         "snapshot_date": snapshot, "visits_30d": visits,
                         "basket_mean": basket, "plan": plan, "label": spend})


def _write(path: str, frame: pd.DataFrame) -> None:
    Path(path).mkdir(parents=True)
    frame.to_parquet(f"{path}/part-0.parquet")
    write_json(manifest_path(path), {
        "key_columns": ["entity_id", "snapshot_date"], "data_version": f"v-{len(frame)}",
        "snapshots": sorted({str(d) for d in frame["snapshot_date"]})})


def _use_case(home: Path, **train_cfg: Any) -> Config:
    return Config.model_validate({
        "name": "spend", "home": str(home),
        "model": {"task": "regression", "target_description": SPEND},
        "features": {"categorical": ["plan"]},
        "train": {"monotone": {}, "num_boost_round": 200, "early_stopping_rounds": 10,
                  "nthread": 2, **train_cfg},
        "gate": {"slices": ["plan"], "min_slice_rows": 50, "tolerance": 0.1,
                 "slice_tolerance": 0.5, "floors": {"rmse": 20.0}},
        "validation": {"data_docs": False}})


@pytest.fixture
def spend_home(tmp_path: Path) -> Path:
    """A lake with train (two snapshots) and test datasets for RUN_DATE."""
    home = tmp_path / "home"
    lake = Lake(_use_case(home).lake_root)
    old, last = RUN_DATE - timedelta(days=60), RUN_DATE - timedelta(days=30)
    _write(lake.dataset("train", RUN_DATE), pd.concat([_spend(600, old, 1),
                                                       _spend(600, last - timedelta(7), 2)]))
    _write(lake.dataset("test", RUN_DATE), _spend(500, last, 3))
    return home


# A model that can barely move from the starting mean: a worse challenger.
UNDERFIT = {"params": {"tree_method": "hist", "max_depth": 1, "eta": 0.02},
            "num_boost_round": 15, "early_stopping_rounds": 15}


def test_regression_trains_raw_values_and_logs_its_metrics(spend_home: Path) -> None:
    cfg = _use_case(spend_home)
    result = train.run(cfg, RUN_DATE)
    assert set(result.metrics) == {"rmse", "mae", "bias", "r2", "mean_label", "mean_score",
                                   "rows"}
    assert result.metrics["rmse"] < 5 and result.metrics["r2"] > 0.8

    ref = registry.by_alias(cfg, registry.CHALLENGER)
    assert ref is not None and ref.version == result.model_version
    booster, spec = artifact.load(registry.local_model(cfg, ref))
    assert json.loads(booster.save_config())["learner"]["objective"]["name"] == (
        "reg:squarederror")
    test, _ = datasets.load_dataset(Lake(cfg.lake_root).dataset("test", RUN_DATE))
    scores = artifact.predict(booster, test, spec)
    assert scores.max() > 1 and result.metrics["mean_score"] == pytest.approx(scores.mean())

    run = registry.client(cfg).get_run(result.run_id).data
    assert {"test_rmse", "test_mae", "test_bias", "test_r2"} <= set(run.metrics)
    assert run.metrics["test_rmse"] == pytest.approx(result.metrics["rmse"])
    assert (run.params["task"], run.params["objective"], run.params["eval_metric"]) == (
        "regression", "reg:squarederror", "rmse")
    train_rows, _ = datasets.load_dataset(Lake(cfg.lake_root).dataset("train", RUN_DATE))
    fallback = registry.lineage(ref)["fallback_score"]  # the training mean of the label
    assert fallback == pytest.approx(train_rows["label"].mean())
    assert "train_label_rate" not in ref.tags


def test_the_gate_promotes_a_lower_rmse_and_rejects_a_higher_one(spend_home: Path) -> None:
    weak = _use_case(spend_home, **UNDERFIT)
    first = train.run(weak, RUN_DATE)
    assert gate.run(weak, RUN_DATE).promoted  # no champion: the rmse ceiling of 20 alone

    cfg = _use_case(spend_home)
    better = train.run(cfg, RUN_DATE)
    result = gate.run(cfg, RUN_DATE)
    assert result.promoted and result.champion_version == first.model_version
    overall = next(r for r in result.decision.rules if r.name.startswith("not worse"))
    assert overall.metric == "rmse" and overall.value < (overall.champion or 0)
    compared = [r.scope for r in result.decision.rules if r.name.startswith("not worse")]
    assert compared == ["overall", "plan=free", "plan=pro"]
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None and champion.version == better.model_version
    card = mlflow.artifacts.load_text(f"runs:/{better.run_id}/card/{model_card.CARD_FILE}")
    assert "- task: regression" in card and f"- label: {SPEND}" in card
    assert f"the predicted value of the label, in its units ({SPEND})" in card
    assert "cancel" not in card and "churn" not in card
    assert f"| rmse | {better.metrics['rmse']:.4f} |" in card and "roc_auc" not in card
    assert "| slice | rows | mean_label | rmse | bias | compared |" in card

    worse = train.run(weak, RUN_DATE)
    with pytest.raises(gate.ChallengerRejectedError,
                       match=rf"challenger v{worse.model_version} rejected.*not worse on rmse"):
        gate.run(weak, RUN_DATE)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None and champion.version == better.model_version
    page = next((weak.space / "reports" / "gate").rglob(f"gate-v{worse.model_version}-*.html"))
    text = page.read_text()
    assert f"Predicted vs actual {SPEND}" in text and "ROC" not in text


def test_spark_engine_trains_a_regressor_with_the_tasks_objective() -> None:
    spec = artifact.FeatureSpec(("visits_30d", "plan"), {"plan": ("free", "pro")})
    regression = _use_case(Path("unused"))
    params = spark_train.booster_params(regression, spec, "cpu")
    assert (params["objective"], params["eval_metric"]) == ("reg:squarederror", "rmse")
    assert params["feature_types"] == ["q", "c"]
    binary = Config.model_validate({"train": {"monotone": {}}})
    assert "objective" not in spark_train.booster_params(binary, spec, "cpu")  # its own
    assert spark_train.booster_params(binary, spec, "cpu")["eval_metric"] == "logloss"


GATE_DIES_AFTER_THE_ALIAS = """
import os, signal, sys
from datetime import date
from precast.model import registry
from precast.config import Config
from precast.steps import gate

move = registry.set_alias

def move_and_die(cfg, alias, version):
    move(cfg, alias, version)
    if alias == registry.CHAMPION:
        os.kill(os.getpid(), signal.SIGKILL)

registry.set_alias = move_and_die
gate.run(Config.model_validate_json(sys.argv[1]), date.fromisoformat(sys.argv[2]))
"""


def test_a_gate_killed_between_the_alias_and_the_history_is_completed_by_its_retry(
        spend_home: Path) -> None:
    """The gate task dies after moving the champion alias, before its history row; its
    retry ends where one clean gate run ends: the alias and the history on the challenger."""
    import signal
    import subprocess
    import sys

    from precast.gate import champions

    weak = _use_case(spend_home, **UNDERFIT)
    first = train.run(weak, RUN_DATE)
    gate.run(weak, RUN_DATE)
    cfg = _use_case(spend_home)
    better = train.run(cfg, RUN_DATE)
    died = subprocess.run([sys.executable, "-c", GATE_DIES_AFTER_THE_ALIAS,
                           cfg.model_dump_json(by_alias=True), RUN_DATE.isoformat()],
                          capture_output=True, text=True, timeout=300, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert champion is not None and champion.version == better.model_version
    recorded = champions.current(cfg.predictions_url, cfg.model.name)
    assert recorded is not None and recorded.model_version == first.model_version

    assert gate.run(cfg, RUN_DATE).promoted  # the retry
    history = champions.history(cfg.predictions_url, cfg.model.name)
    assert [(p.model_version, p.decision) for p in history] == [
        (better.model_version, "gate"), (first.model_version, "gate")]
    assert history[0].reason == f"passed all {len(gate.run(cfg, RUN_DATE).decision.rules)} " \
        f"rules against v{first.model_version}"
    assert champions.pending(cfg) == [] and len(champions.history(
        cfg.predictions_url, cfg.model.name)) == 2  # a third run changes nothing either


def test_a_train_retried_after_it_registered_registers_nothing_new(spend_home: Path) -> None:
    """A retry (or a repeat) of the same training makes the same model from the same inputs:
    it returns the registered challenger, so the registry ends as after one clean run; a
    changed input still registers a new version."""
    cfg = _use_case(spend_home)
    first = train.run(cfg, RUN_DATE)
    again = train.run(cfg, RUN_DATE)
    assert again == first
    names = registry.client(cfg).search_model_versions(f"name='{cfg.model.name}'")
    assert [str(v.version) for v in names] == [first.model_version]
    other = train.run(_use_case(spend_home, **UNDERFIT), RUN_DATE)
    assert other.model_version != first.model_version
