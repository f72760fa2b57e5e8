"""Training sanity: the loss falls round by round, a tiny batch can be learnt by heart, and
the monotone constraints of the config reach XGBoost or fail with the feature's name."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precast.config import ConfigError, TrainConfig
from precast.data.datasets import LABEL
from precast.model import artifact, training
from tests.helpers import Trained


def log_loss_by_round(trained: Trained, rows: pd.DataFrame, rounds: list[int]) -> np.ndarray:
    """Mean log loss of the registered model on `rows` using its first k trees, per k."""
    frame, y = artifact.to_frame(rows, trained.spec), rows[LABEL].to_numpy()
    out = []
    for k in rounds:
        p = np.clip(trained.booster.inplace_predict(frame, iteration_range=(0, k)), 1e-7, 1 - 1e-7)
        out.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return np.array(out)


def test_training_loss_falls_over_rounds(trained: Trained) -> None:
    best = trained.result.best_iteration + 1
    assert best >= 10, f"early stopping after {best} rounds: too few to judge"
    rounds = sorted({1, 2, 3, 5, 8, best // 2, best})
    loss = log_loss_by_round(trained, trained.train_rows, rounds)
    assert np.all(np.diff(loss) < 0), dict(zip(rounds, loss, strict=True))
    assert loss[-1] < 0.8 * loss[0]


def test_validation_loss_is_lowest_near_the_best_round(trained: Trained) -> None:
    cfg = trained.world.cfg.train
    _, valid = training.split_validation(trained.train_rows, cfg.validation_fraction, cfg.seed,
                                      trained.world.cfg.events.entity_key)
    best = trained.result.best_iteration + 1
    first, at_best = log_loss_by_round(trained, valid, [1, best])
    assert at_best < first


def test_the_registered_model_stops_at_its_best_round(trained: Trained) -> None:
    """Early stopping trains past the best round; the served model must not use those trees."""
    best = trained.result.best_iteration
    assert trained.booster.num_boosted_rounds() == best + 1
    assert trained.booster.best_iteration == best
    cfg = trained.world.cfg.train
    assert best + 1 < cfg.num_boost_round  # early stopping did stop this run


def test_model_can_overfit_a_tiny_batch(trained: Trained) -> None:
    rows = trained.train_rows
    tiny = pd.concat([rows[rows[LABEL] == 1].head(16), rows[rows[LABEL] == 0].head(16)])
    params = {**trained.world.cfg.train.params, "max_depth": 6, "eta": 0.3, "subsample": 1.0,
              "colsample_bytree": 1.0, "min_child_weight": 0, "lambda": 0.0}
    train_config = trained.world.cfg.train.model_copy(update={
        "params": params, "num_boost_round": 300, "early_stopping_rounds": 300, "monotone": {}})
    booster = training.fit(tiny, tiny, trained.spec, train_config, "cpu")
    p = artifact.predict(booster, tiny, trained.spec)
    np.testing.assert_array_equal(p > 0.5, tiny[LABEL].to_numpy() == 1)
    assert np.abs(p - tiny[LABEL].to_numpy()).max() < 0.05


def test_the_churn_example_declares_tickets_and_sessions_monotone(trained: Trained) -> None:
    assert TrainConfig().monotone == {}  # precast's default names no feature
    declared = {"support_tickets_30d": 1, "sessions_7d": -1, "sessions_30d": -1}
    assert trained.world.cfg.train.monotone == declared
    assert training.monotone_constraints(trained.spec, trained.world.cfg.train) == declared


@pytest.mark.parametrize("monotone, message", [
    ({"support_tickets_90d": 1}, r"unknown features \['support_tickets_90d'\]"),
    ({"plan": 1}, r"\['plan'\] are categorical"),
])
def test_bad_monotone_feature_is_a_config_error_naming_it(trained: Trained, monotone: dict,
                                                          message: str) -> None:
    train_config = trained.world.cfg.train.model_copy(update={"monotone": monotone})
    rows = trained.train_rows.head(50)
    with pytest.raises(ConfigError, match=f"train.monotone: {message}"):
        training.fit(rows, rows, trained.spec, train_config, "cpu")


@pytest.mark.parametrize("direction", [0, 2, -3])
def test_monotone_direction_must_be_plus_or_minus_one(trained: Trained, direction: int) -> None:
    with pytest.raises(ConfigError, match="train.monotone"):
        trained.world.cfg.with_overrides({"train.monotone": {"sessions_7d": direction}})
