"""Behaviour of the trained model: minimum functionality, invariance and directional tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from precast.data.datasets import LABEL, key_columns
from precast.model import artifact
from tests.helpers import Trained

LOYAL = {"sessions_7d": 12, "sessions_30d": 45, "page_views_7d": 30, "plays_7d": 20,
         "plays_30d": 80, "active_days_7d": 7, "active_days_30d": 14,
         "days_since_last_event": 0, "support_tickets_30d": 0, "plan_changes_30d": 0,
         "tenure_days": 30}
CHURNING = {"sessions_7d": 0, "sessions_30d": 2, "page_views_7d": 0, "plays_7d": 0,
            "plays_30d": 1, "active_days_7d": 0, "active_days_30d": 2,
            "days_since_last_event": 9, "support_tickets_30d": 4, "plan_changes_30d": 2,
            "tenure_days": 30}


def scores(trained: Trained, rows: pd.DataFrame) -> np.ndarray:
    return artifact.predict(trained.booster, rows, trained.spec)


def one_per_segment(trained: Trained) -> pd.DataFrame:
    """A real test row for every plan × device seen, so the cases span the categoricals."""
    return trained.test_rows.drop_duplicates(["plan", "device"]).reset_index(drop=True)


def test_clearly_churning_users_rank_above_clearly_loyal_ones(trained: Trained) -> None:
    base = one_per_segment(trained)
    assert len(base) >= 8
    loyal, churning = scores(trained, base.assign(**LOYAL)), scores(trained,
                                                                    base.assign(**CHURNING))
    assert churning.min() > loyal.max(), (churning, loyal)
    assert np.all(churning - loyal > 0.1), churning - loyal


def test_churners_rank_above_stayers_on_the_test_snapshot(trained: Trained) -> None:
    p, labels = scores(trained, trained.test_rows), trained.test_rows[LABEL].to_numpy()
    assert trained.result.metrics["roc_auc"] > 0.7, trained.result.metrics
    assert p[labels == 1].mean() > 1.5 * p[labels == 0].mean()


def test_keys_and_label_are_not_features(trained: Trained) -> None:
    assert not set(trained.spec.names) & {*key_columns(trained.world.cfg.events), LABEL}
    assert {"support_tickets_30d", "sessions_7d", "plan"} <= set(trained.spec.names)


INVARIANT_CHANGES: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "entity id": lambda df: df.assign(user_id=[f"someone-else-{i}" for i in range(len(df))]),
    "snapshot date": lambda df: df.assign(snapshot_date=pd.Timestamp("2031-07-04").date()),
    "label": lambda df: df.assign(label=1 - df[LABEL]),
    "irrelevant column": lambda df: df.assign(
        campaign_id=np.random.default_rng(3).integers(0, 10**9, len(df))),
    "column order": lambda df: df[list(reversed(df.columns))],
}


@pytest.mark.parametrize("change", INVARIANT_CHANGES, ids=list(INVARIANT_CHANGES))
def test_scores_ignore_what_the_model_must_not_use(trained: Trained, change: str) -> None:
    rows = trained.test_rows.head(500)
    changed = INVARIANT_CHANGES[change](rows)
    assert not changed.equals(rows)
    np.testing.assert_allclose(scores(trained, changed), scores(trained, rows), rtol=0, atol=1e-6)


def test_missing_feature_fails_instead_of_misaligning(trained: Trained) -> None:
    with pytest.raises(artifact.FeatureMismatchError, match="tenure_days"):
        scores(trained, trained.test_rows.drop(columns=["tenure_days"]))


def _never_lower(trained: Trained, rows: pd.DataFrame,
                 step: Callable[[pd.DataFrame, int], pd.DataFrame]) -> None:
    """Scores after each bigger step are never below the previous ones, row by row."""
    previous = scores(trained, rows)
    for k in range(1, 8):
        current = scores(trained, step(rows, k))
        worst = float((previous - current).max())
        assert worst <= 0.0, f"a score fell by {worst} at step {k}"
        previous = current


def test_more_support_tickets_never_lower_the_churn_score(trained: Trained) -> None:
    rows = trained.test_rows.head(400)
    _never_lower(trained, rows, lambda df, k: df.assign(
        support_tickets_30d=df["support_tickets_30d"] + k))
    raised = scores(trained, rows.assign(support_tickets_30d=rows["support_tickets_30d"] + 6))
    assert (raised > scores(trained, rows)).mean() > 0.5  # the feature matters, too


@pytest.mark.parametrize("columns", [("sessions_7d",), ("sessions_30d",),
                                     ("sessions_7d", "sessions_30d")])
def test_fewer_sessions_never_lower_the_churn_score(trained: Trained,
                                                    columns: tuple[str, ...]) -> None:
    rows = trained.test_rows[trained.test_rows["sessions_30d"] >= 7].head(400)
    assert len(rows) > 100
    _never_lower(trained, rows, lambda df, k: df.assign(
        **{c: (df[c] - k).clip(lower=0) for c in columns}))
