"""The steps by name, the training and predict chains, and per-run records.

Every step is keyed by its run date; each finished (or failed) step leaves a JSON
record under `PRECAST_HOME/runs/<date>/<step>.json`, which `precast status` reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from precast.config import Config, redact_text

log = logging.getLogger(__name__)

TRAINING = ("extract", "validate_events", "features", "validate_features", "train", "gate")
PREDICT = ("inference_features", "validate_inference", "score", "validate_predictions",
           "publish")
MONITOR = ("monitor",)
# A day that brings new logs but no training: its events, then predict (one process, one
# Spark session, where Airflow runs the two DAGs).
DAILY = ("extract", "validate_events", *PREDICT)
STEPS = tuple(dict.fromkeys(TRAINING + PREDICT + MONITOR))
READS_EVENTS = {"features", "inference_features"}  # Spark steps over many days of events
CHAINS = {"training": TRAINING, "predict": PREDICT, "monitor": MONITOR, "daily": DAILY}
def _extract(cfg: Config, day: date, **_: Any) -> Any:
    from precast.steps import extract
    return extract.run(cfg, day)


def _validate(dataset: str, kinds: tuple[str, ...] | None = None) -> Callable[..., Any]:
    def step(cfg: Config, day: date, **_: Any) -> Any:
        from precast.steps import validate
        if kinds is None:
            return validate.run(cfg, dataset, day)
        return validate.run(cfg, dataset, day, kinds=kinds)
    return step


def _features(kinds: tuple[str, ...], reuse_written: bool = False) -> Callable[..., Any]:
    def step(cfg: Config, day: date, **_: Any) -> Any:
        from precast.steps import features
        return features.run(cfg, day, kinds=kinds, reuse_written=reuse_written)
    return step


def _train(cfg: Config, day: date, **_: Any) -> Any:
    from precast.steps import train
    return train.run(cfg, day)


def _gate(cfg: Config, day: date, tolerance: float | None = None, **_: Any) -> Any:
    from precast.steps import gate
    return gate.run(cfg, day, tolerance=tolerance)


def _score(cfg: Config, day: date, **_: Any) -> Any:
    from precast.model import registry
    from precast.steps import score

    champion = registry.by_alias(cfg, registry.CHAMPION)
    if champion is None:
        raise LookupError(f"no champion for {cfg.model.name}: run training (and the gate) first")
    model_dir = registry.local_model(cfg, champion)
    return score.run(cfg, day, model_dir, champion.name, champion.version,
                     lineage=registry.lineage(champion))


def _publish(cfg: Config, day: date, **_: Any) -> Any:
    from precast.steps import publish
    return publish.run(cfg, day)


def _monitor(cfg: Config, day: date, **_: Any) -> Any:
    from precast.steps import monitor
    return monitor.run(cfg, day)


RUNNERS: dict[str, Callable[..., Any]] = {
    "extract": _extract,
    "validate_events": _validate("events"),
    "features": _features(("train", "test", "inference")),
    "validate_features": _validate("features"),
    "train": _train,
    "gate": _gate,
    # The day's training run wrote the same inference dataset (same data version): kept.
    "inference_features": _features(("inference",), reuse_written=True),
    "validate_inference": _validate("features", ("inference",)),
    "score": _score,
    "validate_predictions": _validate("predictions"),
    "publish": _publish,
    "monitor": _monitor,
}


def to_jsonable(obj: Any) -> Any:
    """Dataclasses (fields and public properties), dates and paths as plain JSON values;
    NaN and infinities as None (JSON has neither: Airflow's XCom refuses them)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        names = [f.name for f in dataclasses.fields(obj)] + [
            n for n, v in vars(type(obj)).items() if isinstance(v, property) and n[0] != "_"]
        return {n: to_jsonable(getattr(obj, n)) for n in names}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, date | datetime | Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def records_root(cfg: Config) -> Path:
    """Where the run records live: one folder per run date."""
    return cfg.space / "runs"


def record_path(cfg: Config, day: date, step: str) -> Path:
    """Where the run record of `step` for `day` lives."""
    return records_root(cfg) / day.isoformat() / f"{step}.json"


def record(cfg: Config, day: date, step: str, payload: dict[str, Any]) -> Path:
    """Write the step's run record (last attempt wins)."""
    path = record_path(cfg, day, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # renamed: never read half-written
    partial.write_text(redact_text(json.dumps(to_jsonable(payload), indent=2, default=str)))
    partial.replace(path)
    return path


def run_step(cfg: Config, step: str, day: date, **options: Any) -> Any:
    """Run one step by name, time it and record the outcome; errors propagate."""
    if step not in RUNNERS:
        raise ValueError(f"unknown step {step!r}; choose from {', '.join(STEPS)}")
    started = time.perf_counter()
    base = {"step": step, "run_date": day, "started_at": datetime.now(UTC)}
    try:
        result = RUNNERS[step](cfg, day, **options)
    except Exception as exc:
        record(cfg, day, step, {**base, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                                "seconds": round(time.perf_counter() - started, 2)})
        raise
    seconds = round(time.perf_counter() - started, 2)
    record(cfg, day, step, {**base, "status": "success", "seconds": seconds, "result": result})
    log.info("step %s for %s finished in %.1fs", step, day, seconds)
    return result


def run_chain(cfg: Config, chain: str, day: date, on_step: Callable[[str, Any, float], None]
              | None = None, start: str | None = None, **options: Any) -> dict[str, Any]:
    """Run `training` or `predict` step by step (from `start`); stops at the first failure."""
    steps = CHAINS[chain]
    if start is not None and start not in steps:
        raise ValueError(f"step {start!r} is not in the {chain} chain: {', '.join(steps)}")
    steps = steps[steps.index(start) if start else 0:]
    _start_spark_for(cfg, steps)
    results: dict[str, Any] = {}
    for step in steps:
        started = time.perf_counter()
        results[step] = run_step(cfg, step, day, **options)
        if on_step:
            on_step(step, results[step], time.perf_counter() - started)
    return results


def _start_spark_for(cfg: Config, steps: tuple[str, ...]) -> None:
    """Start the one local Spark session of a chain whose feature steps read the clean events,
    sized by them (precast.engines.spark: the JVM's tiers follow the input; the chain's first step,
    e.g. one raw day's extract, would size it small). An empty lake leaves it to that step."""
    if READS_EVENTS.isdisjoint(steps) or not cfg.engines.spark.master.startswith("local"):
        return
    from precast.engines.spark import spark_session
    from precast.lake import size

    events = size([cfg.lake.events()])
    if events:
        spark_session(cfg, input_bytes=events)


def last_records(cfg: Config, limit: int = 1) -> list[tuple[str, list[dict[str, Any]]]]:
    """The most recent run dates' step records, newest first."""
    runs = records_root(cfg)
    days = sorted((p for p in runs.iterdir() if p.is_dir()), reverse=True) if runs.exists() else []
    return [(d.name, [json.loads(f.read_text()) for f in sorted(d.glob("*.json"),
                                                                  key=lambda f: f.stat().st_mtime)])
            for d in days[:limit]]
