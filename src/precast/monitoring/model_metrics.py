"""The `model_metrics` records in the prediction store: one row per figure (drift, estimated or
realised performance) of a snapshot, model version and kind, replaced as a whole when a day
is monitored again, and read back as a trend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

import sqlalchemy as sa

from precast import store
from precast.config import Config
from precast.resources import statement


@dataclass(frozen=True)
class MetricRow:
    """One monitoring figure (see model_metrics in sql/store_schema.sql)."""

    feature: str  # a feature name, or "score"
    metric: str
    value: float | None
    slice: str = ""  # "" = all rows; else e.g. "country=DE"
    rows_used: int | None = None


def stored_value(value: float | None) -> float | None:
    """A figure as the store keeps it: NaN is stored as NULL."""
    return None if value is None or value != value else float(value)


def write_metrics(cfg: Config, snapshot: date, model_version: str, kind: str,
                  rows: Sequence[MetricRow]) -> int:
    """Replace the (snapshot, model version, kind) rows of model_metrics with `rows`."""
    now = datetime.now(UTC).isoformat(sep=" ")
    key = {"snapshot_date": snapshot.isoformat(), "model_name": cfg.model.name,
           "model_version": model_version, "kind": kind}
    with store.connected(cfg.predictions_url) as engine:
        with engine.begin() as conn:
            conn.execute(sa.text(statement("model_metrics_delete")), key)
            if rows:
                conn.execute(sa.text(statement("model_metrics_insert")), [
                    {**key, "feature": r.feature, "metric": r.metric, "slice": r.slice,
                     "value": stored_value(r.value), "rows_used": r.rows_used, "computed_at": now}
                    for r in rows])
    return len(rows)


def trend(cfg: Config, kind: str, metric: str, feature: str = "score",
          slice_: str = "") -> list[tuple[date, str, float | None]]:
    """(snapshot date, model version, value) of one metric over time, oldest first
    (sql/model_metrics_trend.sql)."""
    with store.connected(cfg.predictions_url) as engine:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(statement("model_metrics_trend")), {
                "model_name": cfg.model.name, "kind": kind, "feature": feature,
                "metric": metric, "slice": slice_}).all()
    return [(date.fromisoformat(str(r[0])[:10]), str(r[1]), None if r[2] is None else float(r[2]))
            for r in rows]
