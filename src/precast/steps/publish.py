"""Publish: the day's Parquet predictions become the snapshot behind `predictions_current`.

The snapshot's metadata and lineage come from the score run's manifest; the rows stream as
Arrow record batches (bounded memory) into :func:`precast.store.publish`, which checks every
batch against that metadata, loads a new table and swaps the view, all in one transaction.
Library entry: :func:`run`; driver: `python jobs/publish.py --date YYYY-MM-DD`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads

from precast import lake, store
from precast.config import Config
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


def open_predictions(path: str) -> tuple[pads.Dataset, dict[str, Any]]:
    """The complete Parquet predictions at `path` and score's manifest (present, counts equal)."""
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
    if manifest["row_count"] == 0:
        raise EmptyPredictionsError(f"no prediction rows at {path}: refusing to publish an "
                                    "empty snapshot (it would blank out every lookup)")
    return dataset, manifest


def snapshot_meta(manifest: dict[str, Any], run_date: date) -> SnapshotMeta:
    """The snapshot's metadata and lineage, from score's manifest (the store checks the rows)."""
    if str(manifest.get("snapshot_date")) != run_date.isoformat():
        raise PredictionsInputError(
            f"predictions for {run_date} were scored for {manifest.get('snapshot_date')}")
    lineage = manifest.get("lineage") or {}
    return SnapshotMeta(
        snapshot_date=run_date, model_name=str(manifest["model_name"]),
        model_version=str(manifest["model_version"]),
        data_version=str(manifest["data_version"]),
        mlflow_run_id=lineage.get("mlflow_run_id"),
        training_data_version=lineage.get("training_data_version"),
        code_version=lineage.get("code_version"), fallback_score=lineage.get("fallback_score"),
    )


def statistics_values(dataset: pads.Dataset, columns: Iterable[str]) -> dict[str, set[Any]] | None:
    """The values each column holds, from the Parquet row-group statistics alone (no data is
    read); None when a row group has no usable statistics or holds more than one value."""
    seen: dict[str, set[Any]] = {c: set() for c in columns}
    for fragment in dataset.get_fragments():
        metadata = fragment.metadata
        names = [metadata.schema.column(j).name for j in range(metadata.num_columns)]
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            for column, values in seen.items():
                stats = group.column(names.index(column)).statistics if column in names else None
                if (stats is None or not stats.has_min_max or stats.null_count != 0
                        or stats.min != stats.max):
                    return None
                values.add(stats.min)
    return seen


def batches(dataset: pads.Dataset, meta: SnapshotMeta) -> Iterator[pa.RecordBatch]:
    """Record batches (BATCH_ROWS at most) of the row columns, plus the metadata columns
    unless the Parquet statistics already prove each holds only the snapshot's value (then
    they are not read at all; otherwise the store checks them batch by batch)."""
    expected = {"snapshot_date": meta.snapshot_date, "model_name": meta.model_name,
                "model_version": meta.model_version, "data_version": meta.data_version}
    proven = statistics_values(dataset, META_COLUMNS) == {k: {v} for k, v in expected.items()}
    columns = [*ROW_COLUMNS] if proven else [*ROW_COLUMNS, *META_COLUMNS]
    yield from dataset.to_batches(columns=columns, batch_size=BATCH_ROWS)


def run(cfg: Config, run_date: date) -> PublishResult:
    """Publish the predictions of `run_date` to `cfg.predictions_url`, keeping the newest N."""
    path = cfg.lake.predictions(run_date)
    dataset, manifest = open_predictions(path)
    meta = snapshot_meta(manifest, run_date)
    # A rerun or retry of a publish that is served already changes nothing (no churn of
    # retention); the store decides that inside its publishers' lock.
    info = store.publish(cfg.predictions_url, batches(dataset, meta), meta,
                         keep=cfg.stores.keep_snapshots, policy=store.WritePolicy.of(cfg),
                         rows_if_served=dataset.count_rows())
    assert info.table_name is not None and info.row_count is not None
    log.info("publish %s: snapshot %s serves %s rows of model %s v%s", run_date,
             info.snapshot_id, info.row_count, meta.model_name, meta.model_version)
    return PublishResult(
        snapshot_id=info.snapshot_id, table=info.table_name, rows=info.row_count,
        snapshot_date=run_date, model_name=meta.model_name, model_version=meta.model_version,
        data_version=meta.data_version,
    )
