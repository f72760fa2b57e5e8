"""Backfill safety: features for past dates in any order equal those built in date order."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pandas as pd

from precast.steps import features
from tests.helpers import World


def _content(path: str) -> str:
    df = pd.read_parquet(path).sort_values(["user_id", "snapshot_date"]).reset_index(drop=True)
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()).hexdigest()


def _build(world: World, days: list) -> dict:
    out = {}
    for day in days:
        result = features.run(world.cfg, day)
        out[day] = {d.kind: (d.data_version, d.rows, _content(d.path)) for d in result.datasets}
    return out


def test_features_for_three_dates_in_any_order_are_identical(own_world: World) -> None:
    world = own_world
    days = [world.run_date - timedelta(days=k) for k in (2, 1, 0)]
    in_order = _build(world, days)
    shuffled = _build(world, [days[1], days[2], days[0]])
    assert shuffled == in_order
    versions = {v[0] for per_day in in_order.values() for v in per_day.values()}
    assert len(versions) == 9  # every (date, dataset) has its own version
