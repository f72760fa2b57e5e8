"""Training benchmark: precast's training path vs a bare `xgboost.train`, by rows and device.

On generated rows (20 numeric features, a noisy logistic label) of 100k, 1M and 5M rows,
precast's `training.train_model` (feature spec, validation split of whole entities, early
stopping, device choice) runs on every device this machine has (CPU; CUDA when XGBoost
sees a GPU), each in its own child process. The baseline is `xgboost.train` with the same
parameters, the same rounds and the same device on the same rows, with no validation
split. Rows/s, the device XGBoost actually used and, with a GPU, the CPU/GPU speed-up and
the test AUC of both devices are printed.

    make bench-train                     # or: python -m bench train [--rows 200000]
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bench.common import (
    Row,
    Sizes,
    bench_config,
    child_main,
    count,
    goal_row,
    missing_row,
    rate,
    run_child,
    secs,
)

log = logging.getLogger(__name__)

FAMILY = "train"
ROWS = (100_000, 1_000_000, 5_000_000)
TEST_ROWS = 200_000


def frame(rows: int, seed: int) -> Any:
    """A training frame: user_id, snapshot_date, label and 20 float features."""
    from bench.score import FEATURES, _label, feature_rows

    table = feature_rows(0, rows, seed=seed)
    df = table.to_pandas()
    df["label"] = _label(table, seed)
    return df[["user_id", "snapshot_date", "label", *FEATURES]]


def child_precast(payload: dict[str, Any]) -> dict[str, Any]:
    """precast's train_model on `rows` generated rows, on `device`; time and test AUC."""
    import xgboost as xgb

    from bench.score import FEATURES
    from precast.config import xgboost_params
    from precast.metrics import classification_metrics
    from precast.model import training

    cfg = bench_config(**{"train.device": payload["device"], "train.monotone": {}})
    df, test = frame(payload["rows"], 1), frame(TEST_ROWS, 2)
    started = time.perf_counter()
    booster, spec, device = training.train_model(cfg, df)
    seconds = time.perf_counter() - started
    scores = booster.inplace_predict(test[list(FEATURES)].to_numpy())
    used = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    return {"seconds": seconds, "device": device, "used": used, "xgboost": xgb.__version__,
            "rounds": booster.num_boosted_rounds(), "seed": cfg.train.seed,
            "auc": classification_metrics(test["label"].to_numpy(), scores)["roc_auc"],
            "params": {**xgboost_params(cfg.model.task, cfg.train.params),
                       "nthread": cfg.train.nthread}}


def child_bare(payload: dict[str, Any]) -> dict[str, Any]:
    """`xgboost.train` with precast's parameters and the same number of rounds."""
    import xgboost as xgb

    from bench.score import FEATURES

    df = frame(payload["rows"], 1)
    started = time.perf_counter()
    matrix = xgb.QuantileDMatrix(df[list(FEATURES)].to_numpy(), label=df["label"].to_numpy())
    params = {k: v for k, v in payload["params"].items() if k != "nthread"}
    booster = xgb.train({**params, "device": payload["device"], "seed": payload["seed"]},
                        matrix, num_boost_round=payload["rounds"])
    return {"seconds": time.perf_counter() - started, "rounds": booster.num_boosted_rounds()}


CHILDREN = {"precast": child_precast, "bare": child_bare}


def _devices() -> list[str]:
    from precast.model.training import gpu_available

    return ["cpu", "cuda"] if gpu_available() else ["cpu"]


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """Every size on every device: precast vs bare xgboost.train."""
    sizes_rows = (sizes.rows,) if sizes.rows != Sizes().rows else ROWS
    out, notes, auc = [], [], {}
    for rows in sizes_rows:
        for device in _devices():
            label = f"train {count(rows)} rows on {device}"
            payload: dict[str, Any] = {"rows": rows, "device": device}
            try:
                ours = run_child("bench.train", ["precast", json.dumps(payload)]).data
                bare = run_child("bench.train", ["bare", json.dumps({
                    **payload, "rounds": ours["rounds"], "seed": ours["seed"],
                    "params": ours["params"]})]).data
            except Exception as exc:  # noqa: BLE001 - reported as unmeasured
                log.exception("train benchmark failed")
                out.append(missing_row(FAMILY, label, str(exc).splitlines()[0][:200]))
                continue
            auc[(rows, device)] = ours["auc"]
            out.append(goal_row(FAMILY, f"{label}: precast train vs bare xgboost.train",
                                f"{secs(ours['seconds'])} ({rate(rows, ours['seconds'])})",
                                f"{secs(bare['seconds'])} ({rate(rows, bare['seconds'])})",
                                bare["seconds"] / ours["seconds"], precast=ours, bare=bare))
            notes.append(f"train {count(rows)} on {device}: XGBoost {ours['xgboost']} used "
                         f"{ours['used']}, {ours['rounds']} rounds, seed {ours['seed']}, "
                         f"test AUC {ours['auc']:.4f}")
    for rows in sizes_rows:
        if (rows, "cuda") in auc and (rows, "cpu") in auc:
            gap = abs(auc[(rows, "cuda")] - auc[(rows, "cpu")])
            notes.append(f"train {count(rows)}: |AUC cpu - AUC cuda| = {gap:.2e} "
                         f"({'within' if gap <= 1e-3 else 'OVER'} 1e-3)")
    notes.append("train: precast = training.train_model (spec, validation split, early stopping); "
                 "bare = xgboost.train, same parameters, rounds and device, no validation; "
                 "ratio = bare time / precast time; each in its own process")
    return out, notes


if __name__ == "__main__":
    child_main(CHILDREN)
