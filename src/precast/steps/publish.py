"""Publish: the day's Parquet predictions become the snapshot behind `predictions_current`.

Reads `Lake.predictions(run_date)` as Arrow record batches (bounded memory), checks that
model name, model version and data version are uniform, and hands the batches to
:func:`precast.store.publish`, which loads a new table and swaps the view atomically.
Library entry: :func:`run`; driver: `python jobs/publish.py --date YYYY-MM-DD`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from precast import lake, store
from precast.config import Config
from precast.lake import Lake
from precast.store import EmptyPredictionsError, PredictionsInputError, SnapshotMeta

log = logging.getLogger(__name__)

BATCH_ROWS = 50_000
META_COLUMNS = ("snapshot_date", "model_name", "model_version", "data_version")
ROW_COLUMNS = ("entity_id", "score", "scored_at")


@dataclass(frozen=True)
class PublishResult:
    """The snapshot a publish created and now serves."""

    snapshot_id: int
    table: str
    rows: int
    snapshot_date: date
    model_name: str
    model_version: str
    data_version: str


def open_predictions(path: str) -> pads.Dataset:
    """The complete Parquet predictions at `path` (score's manifest present, counts equal)."""
    if not lake.exists(path):
        raise FileNotFoundError(
            f"no predictions at {path}: run the score step for this date first"
        )
    manifest = lake.read_json(lake.manifest_path(path))
    if manifest is None:
        raise PredictionsInputError(
            f"predictions at {path} have no manifest: the score run did not finish; rerun score")
    dataset = pads.dataset(path, format="parquet")
    if dataset.count_rows() != manifest["row_count"]:
        raise PredictionsInputError(
            f"predictions at {path} hold {dataset.count_rows()} rows but the score manifest "
            f"says {manifest['row_count']}: rerun score")
    missing = [c for c in (*ROW_COLUMNS, *META_COLUMNS) if c not in dataset.schema.names]
    if missing:
        raise PredictionsInputError(f"predictions at {path} lack columns {missing}")
    return dataset


def uniform_values(batches: Iterable[pa.RecordBatch], columns: Iterable[str]) -> dict[str, Any]:
    """The single value each column holds across all batches; mixed or null values raise."""
    seen: dict[str, set[Any]] = {c: set() for c in columns}
    for batch in batches:
        for column, values in seen.items():
            values.update(pc.unique(batch.column(column)).to_pylist())
    if not any(seen.values()):
        raise EmptyPredictionsError("no prediction rows: refusing to publish an empty snapshot")
    for column, values in seen.items():
        if len(values) != 1 or None in values:
            shown = sorted(repr(v) for v in values)[:5]
            raise PredictionsInputError(
                f"predictions column {column} must hold one value for the whole snapshot, "
                f"found {len(values)}: {', '.join(shown)}"
            )
    return {column: next(iter(values)) for column, values in seen.items()}


def snapshot_meta(dataset: pads.Dataset, run_date: date) -> SnapshotMeta:
    """The snapshot's metadata, read from the rows (a metadata-only pass over the data)."""
    values = uniform_values(_batches(dataset, META_COLUMNS), META_COLUMNS)
    if values["snapshot_date"] != run_date:
        raise PredictionsInputError(
            f"predictions for {run_date} hold snapshot_date {values['snapshot_date']}"
        )
    return SnapshotMeta(
        snapshot_date=run_date, model_name=str(values["model_name"]),
        model_version=str(values["model_version"]), data_version=str(values["data_version"]),
    )


def _batches(dataset: pads.Dataset, columns: Iterable[str]) -> Iterator[pa.RecordBatch]:
    """Record batches of the chosen columns, BATCH_ROWS at most each."""
    yield from dataset.to_batches(columns=list(columns), batch_size=BATCH_ROWS)


def _serves(info: store.SnapshotInfo, meta: SnapshotMeta, rows: int) -> bool:
    """True when the served snapshot already holds these predictions (same date, model, data)."""
    return (info.snapshot_date, info.model_name, info.model_version, info.data_version,
            info.row_count) == (meta.snapshot_date, meta.model_name, meta.model_version,
                                meta.data_version, rows)


def run(cfg: Config, run_date: date) -> PublishResult:
    """Publish the predictions of `run_date` to `cfg.predictions_url`, keeping the newest N."""
    path = Lake(cfg.lake_root).predictions(run_date)
    dataset = open_predictions(path)
    meta = snapshot_meta(dataset, run_date)
    info = store.current(cfg.predictions_url)
    if info is not None and _serves(info, meta, dataset.count_rows()):
        log.info("publish %s: snapshot %s already serves these predictions; nothing to do",
                 run_date, info.snapshot_id)  # a rerun or retry must not churn retention
    else:
        info = store.publish(
            cfg.predictions_url, _batches(dataset, (*ROW_COLUMNS, *META_COLUMNS)), meta,
            keep=cfg.stores.keep_snapshots,
        )
    assert info.table_name is not None and info.row_count is not None
    log.info("publish %s: snapshot %s serves %s rows of model %s v%s", run_date,
             info.snapshot_id, info.row_count, meta.model_name, meta.model_version)
    return PublishResult(
        snapshot_id=info.snapshot_id, table=info.table_name, rows=info.row_count,
        snapshot_date=run_date, model_name=meta.model_name, model_version=meta.model_version,
        data_version=meta.data_version,
    )
