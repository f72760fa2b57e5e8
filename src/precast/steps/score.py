"""Score: Beam RunInference with a model artifact over the inference snapshot, in batches.

Elements are `pyarrow.Table` batches (up to `engines.beam.batch_size` rows), never single
rows. Rows missing the entity key or a required feature go to the errors output with a
reason; the rest are scored by :class:`XGBoostBatchHandler` and become prediction rows.
Library entry: :func:`run`; driver: `python jobs/score.py` (see that file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.pvalue import PCollection

from precast import lake
from precast.config import Config
from precast.engines.beam import pipeline_options
from precast.model import artifact
from precast.model.artifact import FeatureMismatchError, FeatureSpec

log = logging.getLogger(__name__)

SNAPSHOT_COLUMN = "snapshot_date"
PREDICTIONS_SCHEMA = pa.schema([
    ("entity_id", pa.string()),
    ("score", pa.float64()),
    ("snapshot_date", pa.date32()),
    ("model_name", pa.string()),
    ("model_version", pa.string()),
    ("data_version", pa.string()),
    ("scored_at", pa.timestamp("us", tz="UTC")),
])
ERRORS_SCHEMA = pa.schema([("entity_id", pa.string()), ("reason", pa.string())])
SCORED_SCHEMA = pa.schema([
    ("entity_id", pa.string()), ("snapshot_date", pa.date32()), ("score", pa.float64()),
])
MISSING_ENTITY = "missing_entity_id"
ERRORS = "errors"
PREDICTIONS = "predictions"


@dataclass(frozen=True)
class LoadedModel:
    """A booster with its feature spec (a class: RunInference keeps a weak reference to it)."""

    booster: Any  # xgboost.Booster
    spec: FeatureSpec


@dataclass(frozen=True)
class ScoreResult:
    """What one scoring run read and wrote."""

    rows_in: int
    scored: int
    errors: int
    predictions_path: str
    errors_path: str
    runner: str


def require_columns(columns: Iterable[str], needed: Iterable[str], what: str) -> None:
    """Raise FeatureMismatchError naming every `needed` column absent from `columns`."""
    present = set(columns)
    missing = [name for name in needed if name not in present]
    if missing:
        raise FeatureMismatchError(f"{what} is missing columns {missing}")


def rechunk(table: pa.Table, batch_size: int) -> Iterator[pa.Table]:
    """Split a table into tables of at most `batch_size` rows (no copy)."""
    for batch in table.to_batches(max_chunksize=batch_size):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def _missing_masks(
    table: pa.Table, entity_key: str, required: Sequence[str]
) -> list[tuple[str, pa.ChunkedArray]]:
    """(reason, per-row flag) for a missing entity key and each missing required feature."""
    masks = [(MISSING_ENTITY, pc.is_null(table[entity_key]))]
    return masks + [(f"missing_feature:{n}", pc.is_null(table[n], nan_is_null=True))
                    for n in required]


def missing_reasons(table: pa.Table, entity_key: str, required: Sequence[str]) -> list[str]:
    """Per row: `;`-joined reasons it cannot be scored (`""` when it can)."""
    flags = [(reason, mask.to_pylist())
             for reason, mask in _missing_masks(table, entity_key, required)]
    return [";".join(r for r, m in flags if m[i]) for i in range(table.num_rows)]


def split_batch(
    table: pa.Table, entity_key: str, required: Sequence[str]
) -> tuple[pa.Table, pa.Table]:
    """(scorable rows, error rows as ERRORS_SCHEMA) of one batch (vectorised; reasons are
    spelled out only for the rows that have one)."""
    require_columns(table.column_names, [entity_key, SNAPSHOT_COLUMN, *required], "batch")
    bad = pc.is_null(table[entity_key])
    for _, mask in _missing_masks(table, entity_key, required)[1:]:
        bad = pc.or_(bad, mask)
    if not pc.any(bad).as_py():
        return table, ERRORS_SCHEMA.empty_table()
    rejected = table.filter(bad)
    errors = pa.table({
        "entity_id": pc.cast(rejected[entity_key], pa.string()),
        "reason": pa.array(missing_reasons(rejected, entity_key, required), pa.string()),
    }, schema=ERRORS_SCHEMA)
    return table.filter(pc.invert(bad)), errors


def scored_table(table: pa.Table, entity_key: str, scores: np.ndarray) -> pa.Table:
    """Entity id, snapshot date and score of each row of `table` (SCORED_SCHEMA)."""
    return pa.table({
        "entity_id": pc.cast(table[entity_key], pa.string()),
        "snapshot_date": pc.cast(table[SNAPSHOT_COLUMN], pa.date32()),
        "score": pa.array(scores, pa.float64()),
    }, schema=SCORED_SCHEMA)


def prediction_table(
    scored: pa.Table, model_name: str, model_version: str, data_version: str, scored_at: datetime
) -> pa.Table:
    """Scored rows as PREDICTIONS_SCHEMA rows with the run's constants."""
    n = scored.num_rows
    return pa.table({
        "entity_id": scored["entity_id"],
        "score": scored["score"],
        "snapshot_date": scored["snapshot_date"],
        "model_name": pa.repeat(pa.scalar(model_name, pa.string()), n),
        "model_version": pa.repeat(pa.scalar(model_version, pa.string()), n),
        "data_version": pa.repeat(pa.scalar(data_version, pa.string()), n),
        "scored_at": pa.repeat(pa.scalar(scored_at, pa.timestamp("us", tz="UTC")), n),
    }, schema=PREDICTIONS_SCHEMA)


def num_rows(table: pa.Table) -> int:
    """Rows in a table: the weight RunInference's batching gives each element."""
    return int(table.num_rows)


class XGBoostBatchHandler(ModelHandler[pa.Table, pa.Table, LoadedModel]):
    """RunInference handler: examples are tables of rows, coalesced up to `batch_rows` rows."""

    def __init__(self, model_dir: Path | str, entity_key: str, batch_rows: int = 4096) -> None:
        """BatchElements weighs each table by its rows, so small tables share one predict call."""
        super().__init__(min_batch_size=batch_rows, max_batch_size=batch_rows,
                         element_size_fn=num_rows)
        self._model_dir = Path(model_dir)
        self._entity_key = entity_key

    def load_model(self) -> LoadedModel:
        """Booster and feature spec from the model directory (once per worker)."""
        return LoadedModel(*artifact.load(self._model_dir))

    def run_inference(
        self, batch: Sequence[pa.Table], model: LoadedModel,
        inference_args: dict[str, Any] | None = None,
    ) -> Iterable[pa.Table]:
        """One scored table for the whole batch, via `artifact.predict` (spec-checked)."""
        if not batch:
            return []
        columns = list(dict.fromkeys([self._entity_key, SNAPSHOT_COLUMN, *model.spec.names]))
        for table in batch:
            require_columns(table.column_names, columns, "inference batch")
        rows = pa.concat_tables([t.select(columns) for t in batch], promote_options="permissive")
        scores = artifact.predict(model.booster, rows, model.spec)
        return [scored_table(rows, self._entity_key, scores)]

    def get_num_bytes(self, batch: Sequence[pa.Table]) -> int:
        """Arrow buffer size of the batch (the default pickles it)."""
        return sum(table.nbytes for table in batch)

    def get_metrics_namespace(self) -> str:
        """Metrics namespace of this handler."""
        return "precast_score"


class _SplitScorable(beam.DoFn):
    """Scorable rows to the main output, unscorable ones to `errors`."""

    def __init__(self, entity_key: str, required: Sequence[str]) -> None:
        self._entity_key = entity_key
        self._required = tuple(required)

    def process(self, table: pa.Table) -> Iterator[Any]:
        """Split one batch; empty halves are not emitted."""
        scorable, errors = split_batch(table, self._entity_key, self._required)
        if errors.num_rows:
            yield beam.pvalue.TaggedOutput(ERRORS, errors)
        if scorable.num_rows:
            yield scorable


class ScorePredictions(
        beam.PTransform[PCollection[pa.Table], dict[str, PCollection[pa.Table]]]):
    """Tables of inference features → {"predictions": tables, "errors": tables}."""

    def __init__(
        self, model_dir: Path | str, model_name: str, model_version: str, data_version: str,
        scored_at: datetime, required: Sequence[str], *, entity_key: str,
        batch_size: int = 4096,
    ) -> None:
        """`scored_at` is one UTC timestamp for the whole run."""
        super().__init__()
        if scored_at.tzinfo is None:
            raise ValueError("scored_at must be timezone-aware (UTC)")
        self._handler = XGBoostBatchHandler(model_dir, entity_key, batch_size)
        self._meta = (model_name, model_version, data_version, scored_at.astimezone(UTC))
        self._required = tuple(required)
        self._entity_key = entity_key
        self._batch_size = batch_size

    def expand(self, tables: PCollection[pa.Table]) -> dict[str, PCollection[pa.Table]]:
        """Rechunk, split, RunInference, shape predictions: one fused, streaming stage.

        No Reshuffle: the Parquet read is already split across workers by the runner, and a
        shuffle of Arrow tables would materialise (and pickle) the whole input.
        """
        split = (
            tables
            | "Rechunk" >> beam.FlatMap(rechunk, self._batch_size)
            | "Split" >> beam.ParDo(_SplitScorable(self._entity_key, self._required))
            .with_outputs(ERRORS, main="scorable")
        )
        predictions = (
            split["scorable"]
            | "RunInference" >> RunInference(self._handler)
            | "ToPredictions" >> beam.Map(prediction_table, *self._meta)
        )
        return {PREDICTIONS: predictions, ERRORS: split[ERRORS]}


def _parquet_rows(path: str) -> tuple[pa.Schema, int]:
    """Schema and row count of a Parquet dataset folder (`_`/`.` files ignored)."""
    dataset = pads.dataset(path, format="parquet")
    return dataset.schema, dataset.count_rows()


def input_columns(cfg: Config, spec: FeatureSpec) -> list[str]:
    """Columns score reads: entity key, snapshot date, required and model features."""
    needed = [cfg.events.entity_key, SNAPSHOT_COLUMN, *cfg.features.required, *spec.names]
    return list(dict.fromkeys(needed))


def _inference_input(cfg: Config, run_date: date, spec: FeatureSpec) -> tuple[str, str, int]:
    """(path, data_version, row count) of the inference dataset, its schema checked."""
    path = cfg.lake.dataset("inference", run_date)
    manifest = lake.read_json(lake.manifest_path(path))
    if manifest is None:
        raise FileNotFoundError(f"no inference dataset (no manifest) at {path}")
    schema, rows = _parquet_rows(path)
    require_columns(schema.names, input_columns(cfg, spec), f"inference dataset {path}")
    return path, str(manifest["data_version"]), rows


def _write(tables: PCollection[pa.Table], label: str, path: str, schema: pa.Schema) -> None:
    """Write tables as Parquet files under `path` (one empty file when there are none)."""
    _ = tables | label >> beam.io.WriteToParquetBatched(
        f"{path}/part", schema=schema, file_name_suffix=".parquet", codec="snappy"
    )


def _read_back(rows_in: int, pred_path: str, err_path: str, runner: str) -> ScoreResult:
    """Count what the pipeline wrote; every input row is a prediction or an error."""
    _, scored = _parquet_rows(pred_path)
    _, errors = _parquet_rows(err_path)
    if scored + errors != rows_in:
        raise RuntimeError(
            f"score lost rows: read {rows_in}, wrote {scored} predictions + {errors} errors")
    return ScoreResult(rows_in, scored, errors, pred_path, err_path, runner)


def _run_pipeline(
    cfg: Config, source: str, columns: list[str], transform: ScorePredictions,
    pred_path: str, err_path: str,
) -> None:
    """Read the features, apply `transform`, write both outputs; blocks until done."""
    with beam.Pipeline(options=pipeline_options(cfg)) as pipeline:
        outputs = (
            pipeline
            | "ReadFeatures" >> beam.io.ReadFromParquetBatched(
                f"{source}/*.parquet", columns=columns)
            | "Score" >> transform
        )
        _write(outputs[PREDICTIONS], "WritePredictions", pred_path, PREDICTIONS_SCHEMA)
        _write(outputs[ERRORS], "WriteErrors", err_path, ERRORS_SCHEMA)


def run(
    cfg: Config, run_date: date, model_dir: Path, model_name: str, model_version: str,
    scored_at: datetime | None = None, lineage: Mapping[str, Any] | None = None,
) -> ScoreResult:
    """Score the inference snapshot of `run_date`; overwrite its predictions and errors.

    `lineage` (the model's training run, data and code versions, fallback score) goes into the
    predictions manifest, from which publish records it on the snapshot.
    """
    _, spec = artifact.load(model_dir)
    source, data_version, rows_in = _inference_input(cfg, run_date, spec)
    paths = cfg.lake
    pred_path, err_path = paths.predictions(run_date), paths.prediction_errors(run_date)
    for path in (pred_path, err_path):
        lake.delete_dir(path)
    scored_at = (scored_at or datetime.now(UTC)).astimezone(UTC)
    transform = ScorePredictions(
        model_dir, model_name, model_version, data_version, scored_at, cfg.features.required,
        entity_key=cfg.events.entity_key, batch_size=cfg.engines.beam.batch_size)
    runner = str(pipeline_options(cfg).get_all_options()["runner"])  # what Beam will use
    log.info("scoring %d rows of %s with %s %s on %s", rows_in, source, model_name,
             model_version, runner)
    _run_pipeline(cfg, source, input_columns(cfg, spec), transform, pred_path, err_path)
    result = _read_back(rows_in, pred_path, err_path, runner)
    lake.write_json(lake.manifest_path(pred_path), {
        "row_count": result.scored, "errors": result.errors, "snapshot_date": run_date,
        "model_name": model_name, "model_version": model_version,
        "data_version": data_version, "scored_at": scored_at.isoformat(), "runner": runner,
        "lineage": dict(lineage or {})})
    log.info("scored %d rows, %d errors -> %s", result.scored, result.errors, pred_path)
    return result
