"""Behaviour of the trained champion: ranks the obvious cases, never misaligns features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precast import lake as lk
from precast import model_artifact as ma
from precast import registry
from tests.conftest import World


@pytest.fixture(scope="module")
def champion(world: World) -> tuple:
    ref = registry.by_alias(world.cfg, registry.CHAMPION)
    assert ref is not None
    return ma.load(registry.local_model(world.cfg, ref))


@pytest.fixture(scope="module")
def test_rows(world: World) -> pd.DataFrame:
    return pd.read_parquet(lk.Lake(world.cfg.lake_root).dataset("test", world.run_date))


def test_obvious_churner_scores_above_obvious_loyal_user(champion, test_rows) -> None:
    booster, spec = champion
    base = test_rows.iloc[[0]].copy()
    loyal = base.assign(sessions_7d=12, sessions_30d=45, plays_7d=20, plays_30d=80,
                        active_days_7d=7, active_days_30d=28, days_since_last_event=0,
                        support_tickets_30d=0, tenure_days=200)
    churner = base.assign(sessions_7d=0, sessions_30d=2, plays_7d=0, plays_30d=1,
                          active_days_7d=0, active_days_30d=2, days_since_last_event=12,
                          support_tickets_30d=4, tenure_days=200)
    scores = ma.predict(booster, pd.concat([loyal, churner]), spec)
    assert scores[1] > scores[0] + 0.05, scores


def test_churners_score_higher_on_average(champion, test_rows) -> None:
    booster, spec = champion
    scores = ma.predict(booster, test_rows, spec)
    labels = test_rows["label"].to_numpy()
    assert scores[labels == 1].mean() > 1.5 * scores[labels == 0].mean()


def test_column_order_does_not_matter_and_missing_columns_fail(champion, test_rows) -> None:
    booster, spec = champion
    shuffled = test_rows[list(reversed(test_rows.columns))]
    np.testing.assert_array_equal(ma.predict(booster, shuffled, spec),
                                  ma.predict(booster, test_rows, spec))
    with pytest.raises(ma.FeatureMismatchError, match="tenure_days"):
        ma.predict(booster, test_rows.drop(columns=["tenure_days"]), spec)
