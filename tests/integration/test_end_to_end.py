"""The whole pipeline on generated logs: training, gate, Beam scoring, publish, lookup."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from precast import pipeline, store
from precast.gate import champions
from precast.lake import Lake, read_json
from precast.model import registry
from precast.monitoring import alerts
from precast.serving.lookup import LookupClient
from precast.steps.gate import ChallengerRejectedError
from precast.validation import ValidationFailed
from tests.helpers import World, replace_dataset


def _records(world: World, step: str) -> dict:
    path = world.cfg.space / "runs" / world.run_date.isoformat() / f"{step}.json"
    return json.loads(path.read_text())


def _predictions(world: World) -> pd.DataFrame:
    path = Lake(world.cfg.lake_root).predictions(world.run_date)
    return pd.read_parquet(path).sort_values("entity_id").reset_index(drop=True)


def test_first_run_promotes_and_publishes(world: World) -> None:
    champion = registry.by_alias(world.cfg, registry.CHAMPION)
    assert champion is not None and champion.version == "1"
    assert champion.tags["data_version"] and champion.tags["code_version"]
    assert champion.tags["gate.decision"] == "promoted"
    _evidence_is_recorded(world, champion)
    train = _records(world, "train")["result"]
    assert train["metrics"]["roc_auc"] > 0.65, train["metrics"]
    current = store.current(world.cfg.predictions_url)
    preds = _predictions(world)
    assert current is not None and current.row_count == len(preds) > 500
    ids = preds["entity_id"].head(3).tolist()
    rows = LookupClient(world.cfg.predictions_url).get([*ids, "nobody"])
    assert [r.found for r in rows] == [True, True, True, False]
    assert [r.score for r in rows[:3]] == pytest.approx(preds["score"].head(3).tolist())
    assert {r.model_version for r in rows[:3]} == {"1"}


def _evidence_is_recorded(world: World, champion: registry.ModelRef) -> None:
    """The gate's report and the model card are MLflow artifacts; the promotion is in
    champion_history with the report as its evidence."""
    import mlflow

    report = mlflow.artifacts.load_text(champion.tags["gate.report"])
    assert report.startswith("<!doctype html>") and report.count("<svg") >= 4
    assert f"challenger v{champion.version}" in report and "PROMOTED" in report
    card = mlflow.artifacts.load_text(champion.tags["model_card"])
    assert card.startswith(f"# Model card: {world.cfg.model.name} v{champion.version}")
    assert "**promoted**" in card and "## Metrics by slice" in card and "| country=" in card
    assert champion.tags["data_version"] in card
    (period,) = champions.history(world.cfg.predictions_url, world.cfg.model.name)
    assert (period.model_version, period.decision, period.decided_by) == (
        champion.version, "gate", "gate")
    assert period.evidence == champion.tags["gate.report"]


def test_every_planted_bad_line_is_accounted_for(world: World) -> None:
    planted = read_json(f"{Lake(world.cfg.lake_root).raw_events()}/_planted.json")
    assert planted is not None
    extract = _records(world, "extract")["result"]
    assert extract["read"] == extract["kept"] + extract["quarantined"] + extract["duplicates"]
    seen: dict[str, int] = {"duplicate_event_id": extract["duplicates"]}
    for day in extract["days"]:
        for reason, n in day["by_reason"].items():
            kind = reason.split(":")[0]  # missing_field:<name> counts as missing_field
            seen[kind] = seen.get(kind, 0) + n
    assert seen == {k: v for k, v in planted["totals"].items() if v}


def test_rerun_same_day_is_reproducible(own_world: World) -> None:
    world = own_world
    before = _records(world, "train")["result"]
    first_predictions = _predictions(world)
    pipeline.run_chain(world.cfg, "training", world.run_date)
    pipeline.run_chain(world.cfg, "predict", world.run_date)
    after = _records(world, "train")["result"]
    assert after["data_version"] == before["data_version"]
    assert after["metrics"] == before["metrics"]
    assert after["model_version"] == before["model_version"]  # the same: nothing registered
    assert after["run_id"] == before["run_id"]
    again = _predictions(world)
    assert again["entity_id"].tolist() == first_predictions["entity_id"].tolist()
    np.testing.assert_array_equal(again["score"].to_numpy(), first_predictions["score"].to_numpy())


def test_gate_rejects_a_worse_challenger(own_world: World) -> None:
    world = own_world
    champion = registry.by_alias(world.cfg, registry.CHAMPION)
    served = store.current(world.cfg.predictions_url)
    path = Lake(world.cfg.lake_root).dataset("train", world.run_date)
    train = pd.read_parquet(path)
    train["label"] = np.random.default_rng(0).permutation(train["label"].to_numpy())
    replace_dataset(path, train)
    pipeline.run_step(world.cfg, "train", world.run_date)
    with pytest.raises(ChallengerRejectedError, match="rejected, champion v"):
        pipeline.run_step(world.cfg, "gate", world.run_date)
    assert registry.by_alias(world.cfg, registry.CHAMPION) == champion
    assert store.current(world.cfg.predictions_url) == served
    rejected = registry.by_alias(world.cfg, registry.CHALLENGER)
    assert rejected is not None and rejected.tags["gate.decision"] == "rejected"
    assert "floor roc_auc" in rejected.tags["gate.rules_failed"]
    assert champions.current(world.cfg.predictions_url, world.cfg.model.name).model_version \
        == champion.version
    (alert,) = [a for a in alerts.alerts_of(world.cfg, world.run_date)
                if a["rule"] == "challenger_rejected"]
    assert alert["subject"] == f"v{rejected.version}" and alert["severity"] == "critical"
    assert "floor roc_auc" in alert["message"] and "(evidence: " in alert["message"]


def test_failing_features_suite_stops_before_training(own_world: World) -> None:
    world = own_world
    versions_before = registry.client(world.cfg).search_model_versions(
        f"name='{world.cfg.model.name}'")
    served = store.current(world.cfg.predictions_url)
    path = Lake(world.cfg.lake_root).dataset("test", world.run_date)
    bad = pd.read_parquet(path)
    bad.loc[0, "sessions_7d"] = -5
    bad.loc[1, "plan"] = "enterprise"
    replace_dataset(path, bad)
    with pytest.raises(ValidationFailed, match="features"):
        pipeline.run_chain(world.cfg, "training", world.run_date, start="validate_features")
    after = registry.client(world.cfg).search_model_versions(f"name='{world.cfg.model.name}'")
    assert len(after) == len(versions_before)
    assert store.current(world.cfg.predictions_url) == served
    assert _records(world, "validate_features")["status"] == "failed"
    assert [(a["rule"], a["subject"]) for a in alerts.alerts_of(world.cfg, world.run_date)
            if a["rule"] == "validation_failed"] == [("validation_failed", "features")]
