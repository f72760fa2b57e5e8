"""Scoring benchmark: the Beam score step against plain in-process `inplace_predict`.

Both read the same inference Parquet (entity key, snapshot date, 20 numeric features) and write
Parquet predictions. precast runs `precast.steps.score.run` (the production path: Beam
RunInference with precast's XGBoost handler, FnApiRunner) once per running mode: `in_memory`
and `multi_processing` with one worker per core. The baseline is a hand-written loop: read
record batches of 65,536 rows, `booster.inplace_predict`, write Parquet. Each runs in its own
child process; both outputs are compared row by row (same entities, same scores).

    python -m bench score              # or: python bench/run.py score
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from bench.common import (
    DATA_VERSION,
    MODEL_NAME,
    MODEL_VERSION,
    SCORED_AT,
    SNAPSHOT_DATE,
    Row,
    Sizes,
    bench_config,
    bench_home,
    child_main,
    count,
    entity_ids,
    goal_row,
    missing_row,
    prediction_table,
    rate,
    run_child,
    secs,
)
from precast import lake
from precast.config import Config
from precast.lake import Lake

log = logging.getLogger(__name__)

FAMILY = "score"
FEATURES = ("tenure_days", "days_since_last_event", *(f"f{i:02d}" for i in range(2, 20)))
FILE_ROWS = 250_000
BASELINE_BATCH = 65_536
TRAIN_ROWS = 50_000
GOAL = 0.7


# ---------------------------------------------------------------- data and model


def feature_rows(start: int, stop: int, seed: int = 11) -> pa.Table:
    """Inference rows [start, stop): user_id, snapshot_date and 20 float features."""
    rng = np.random.default_rng([seed, start])
    n = stop - start
    columns: dict[str, Any] = {
        "user_id": entity_ids(start, stop),
        "snapshot_date": pa.repeat(pa.scalar(SNAPSHOT_DATE, pa.date32()), n),
    }
    for name in FEATURES:
        columns[name] = pa.array(rng.normal(size=n), pa.float64())
    return pa.table(columns)


def _label(table: pa.Table, seed: int) -> np.ndarray:
    """A synthetic churn label: noisy logistic function of a few features."""
    x = np.column_stack([table[n].to_numpy() for n in FEATURES])
    logit = x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 2] * x[:, 3] + 0.3 * np.abs(x[:, 4])
    rng = np.random.default_rng(seed)
    return (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(np.float32)


def train_model(directory: Path) -> Path:
    """A 100-round, depth-6 XGBoost model on 20 features, saved as a precast model artifact."""
    import xgboost as xgb

    from precast.model import artifact
    from precast.model.artifact import FeatureSpec

    if (directory / artifact.BOOSTER_FILE).exists():
        return directory
    table = feature_rows(0, TRAIN_ROWS, seed=3)
    matrix = xgb.DMatrix(np.column_stack([table[n].to_numpy() for n in FEATURES]),
                         label=_label(table, 3), feature_names=list(FEATURES))
    params = {"objective": "binary:logistic", "max_depth": 6, "eta": 0.1, "seed": 0,
              "tree_method": "hist", "nthread": os.cpu_count() or 2}
    booster = xgb.train(params, matrix, num_boost_round=100)
    return artifact.save(directory, booster, FeatureSpec(FEATURES))


def inference_lake(rows: int) -> str:
    """Lake root holding the inference dataset of `rows` entities for SNAPSHOT_DATE (made once)."""
    root = str(bench_home() / f"lake-score-{rows}")
    path = Lake(root).dataset("inference", SNAPSHOT_DATE)
    manifest = lake.read_json(lake.manifest_path(path))
    if manifest is not None and manifest.get("row_count") == rows:
        return root
    lake.delete_dir(path)
    Path(path).mkdir(parents=True)
    for part, start in enumerate(range(0, rows, FILE_ROWS)):
        pq.write_table(feature_rows(start, min(rows, start + FILE_ROWS)),
                       f"{path}/part-{part:05d}.parquet", row_group_size=65_536)
    lake.write_json(lake.manifest_path(path), {"row_count": rows, "data_version": DATA_VERSION})
    return root


# ---------------------------------------------------------------- children


def child_beam(payload: dict[str, Any]) -> dict[str, Any]:
    """precast's score step (Beam, FnApiRunner) in the given running mode."""
    import xgboost  # noqa: F401 - imported before the clock starts, as the baseline does

    from precast.steps import score

    options: dict[str, Any] = {"direct_running_mode": payload["mode"]}
    if payload["mode"] == "multi_processing":
        options["direct_num_workers"] = payload["workers"]
    cfg = bench_config(**{"stores.lake": payload["lake"], "engines.beam.options": options})
    started = time.perf_counter()
    result = score.run(cfg, SNAPSHOT_DATE, Path(payload["model_dir"]), MODEL_NAME,
                       MODEL_VERSION, scored_at=SCORED_AT)
    return {"seconds": time.perf_counter() - started, "scored": result.scored,
            "errors": result.errors, "path": result.predictions_path, "runner": result.runner}


def child_baseline(payload: dict[str, Any]) -> dict[str, Any]:
    """Read batches, `booster.inplace_predict`, write Parquet predictions; in one process."""
    import xgboost as xgb

    from precast.steps.score import PREDICTIONS_SCHEMA

    source = Lake(payload["lake"]).dataset("inference", SNAPSHOT_DATE)
    out = Path(payload["out"])
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    started = time.perf_counter()
    booster = xgb.Booster()
    booster.load_model(str(Path(payload["model_dir"]) / "model.ubj"))
    dataset = pads.dataset(source, format="parquet")
    rows = 0
    with pq.ParquetWriter(out / "part-00000.parquet", PREDICTIONS_SCHEMA,
                          compression="snappy") as writer:
        for batch in dataset.to_batches(columns=["user_id", *FEATURES],
                                        batch_size=BASELINE_BATCH):
            x = np.column_stack([batch.column(n).to_numpy() for n in FEATURES])
            scores = booster.inplace_predict(x).astype(np.float64)
            writer.write_table(prediction_table(batch.column("user_id"), scores))
            rows += batch.num_rows
    return {"seconds": time.perf_counter() - started, "scored": rows, "path": str(out)}


CHILDREN = {"beam": child_beam, "baseline": child_baseline}


# ---------------------------------------------------------------- comparing and summarising


def compare_outputs(ours: str, theirs: str, rows: int) -> list[str]:
    """Problems when the two prediction sets differ (entities, scores, metadata)."""
    columns = ["entity_id", "score", "model_version", "data_version", "scored_at"]
    a = pads.dataset(ours, format="parquet").to_table(columns=columns).sort_by("entity_id")
    b = pads.dataset(theirs, format="parquet").to_table(columns=columns).sort_by("entity_id")
    problems = []
    if a.num_rows != rows or b.num_rows != rows:
        problems.append(f"row counts {a.num_rows} (precast) / {b.num_rows} (baseline), "
                        f"expected {rows}")
    elif not a["entity_id"].equals(b["entity_id"]):
        problems.append("different entity ids")
    else:
        gap = pc.max(pc.abs(pc.subtract(a["score"], b["score"]))).as_py()
        if gap > 1e-6:
            problems.append(f"scores differ by up to {gap:.3g}")
        for name in ("model_version", "data_version", "scored_at"):
            if not a[name].equals(b[name]):
                problems.append(f"{name} differs")
    return problems


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """Beam (both running modes) against the in-process baseline on `sizes.rows` entities."""
    rows = sizes.rows
    root = inference_lake(rows)
    model_dir = str(train_model(bench_home() / "score-model"))
    workers = os.cpu_count() or 2
    payload = {"lake": root, "model_dir": model_dir,
               "out": str(bench_home() / f"score-baseline-{rows}"), "workers": workers}
    label = f"score {count(rows)} entities"
    try:
        base = run_child("bench.score", ["baseline", json.dumps(payload)])
    except Exception as exc:  # noqa: BLE001 - reported as unmeasured
        log.exception("score baseline failed")
        reason = str(exc).splitlines()[0][:200]
        return [missing_row(FAMILY, f"{label}: baseline", reason, f">= {GOAL}x")], []
    base_s = base.data["seconds"]
    out, notes = [], [f"score baseline: {secs(base_s)}, batches of {BASELINE_BATCH} rows"]
    default_mode = Config().engines.beam.options.get("direct_running_mode")
    for mode, title in (("in_memory", "in_memory"),
                        ("multi_processing", f"multi_processing, {workers} workers")):
        measurement = f"{label}: Beam ({title}) vs in-process inplace_predict"
        goal = GOAL if mode == default_mode else None  # the others are for reference
        try:
            beam = run_child("bench.score", ["beam", json.dumps({**payload, "mode": mode})])
        except Exception as exc:  # noqa: BLE001 - reported as unmeasured
            log.exception("score Beam %s failed", mode)
            out.append(missing_row(FAMILY, measurement, str(exc).splitlines()[0][:200],
                                   f">= {goal}x" if goal else "-"))
            continue
        beam_s = beam.data["seconds"]
        problems = compare_outputs(beam.data["path"], base.data["path"], rows)
        value = f"{secs(beam_s)} ({rate(rows, beam_s)})"
        if problems:
            value += " WRONG OUTPUT: " + "; ".join(problems)
        row = goal_row(FAMILY, measurement, value, f"{secs(base_s)} ({rate(rows, base_s)})",
                       base_s / beam_s, at_least=goal, beam_run=beam.data,
                       baseline_run=base.data)
        if problems:
            row.met = False
        out.append(row)
        out.append(Row(FAMILY, f"{label}: Beam ({title}) peak memory, process tree",
                       f"{beam.tree_peak_bytes / 2**20:,.0f} MiB",
                       f"{base.tree_peak_bytes / 2**20:,.0f} MiB",
                       detail={"tree_peak_bytes": beam.tree_peak_bytes,
                               "max_rss_bytes": beam.max_rss_bytes}))
        notes.append(f"score Beam {title}: {secs(beam_s)}, runner {beam.data['runner']}, "
                     f"outputs {'match' if not problems else 'DIFFER'}")
    notes.append(f"score: the goal applies to precast's configured running mode "
                 f"({default_mode}); on {workers} cores, multi_processing pays for starting "
                 "its worker processes and moving every batch between them over gRPC")
    notes.append("score: both read the same inference Parquet and write Parquet predictions; "
                 "precast = precast.steps.score.run (Beam RunInference, FnApiRunner); ratio = "
                 "baseline time / Beam time; peak memory = the sum of RSS over the measured "
                 "process and all its workers, sampled every 0.2 s")
    return out, notes


if __name__ == "__main__":
    child_main(CHILDREN)
