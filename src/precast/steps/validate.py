"""Validation (Great Expectations): the `events`, `features` and `predictions` suites.

Run: `python jobs/validate.py --dataset features --date 2026-03-01` (or `precast run validate`).
A dataset's suite is precast's contract for it (`expectations/<dataset>.json`, shipped in the
wheel) followed by the use case's own expectations (`<validation.suites>/<dataset>.json` in
its folder, when there is one), both read through `precast.resources`. A kwargs value
`{"$config": "events.kind.values"}` is filled from the Config at run time; an optional
`"kinds": ["train", "test"]` limits an expectation to those feature datasets, and an optional
`"when"` to configs where a path is set (`"events.kind"`) or has a value
(`{"model.task": "binary"}`).
The GX context is file-backed under `PRECAST_HOME/gx` (built on first use, cached per home
in the process); every run updates the Data Docs in
`PRECAST_HOME/gx/uncommitted/data_docs/local_site/`. A failed suite raises
`ValidationFailed` naming the suite, the dataset, each failed expectation and the page.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from precast.config import Config
from precast.data.datasets import KINDS
from precast.lake import exists
from precast.validation.checks import (
    ValidationFailed,
    ValidationResult,
    _combine,
    failure_message,
    gx_suite_name,
    validate_frame,
)
from precast.validation.context import NO_DOCS, docs_index

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


DATASETS = ("events", "features", "predictions")


def _targets(cfg: Config, dataset: str, run_date: date, kinds: Sequence[str]
             ) -> list[tuple[str | None, str]]:
    """(feature kind or None, lake path) of every dataset `run` validates."""
    lake = cfg.lake
    if dataset == "events":
        return [(None, lake.events(run_date))]
    if dataset == "predictions":
        return [(None, lake.predictions(run_date))]
    if dataset != "features":
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
    if unknown := [k for k in kinds if k not in KINDS]:
        raise ValueError(f"unknown features kinds {unknown}; expected {KINDS}")
    return [(kind, lake.dataset(kind, run_date)) for kind in kinds]


def _read(cfg: Config, dataset: str, path: str, spark: SparkSession | None) -> Any:
    """Events as a Spark DataFrame (our session); features and predictions as pandas."""
    if not exists(path):
        raise FileNotFoundError(f"no {dataset} data at {path}; run the step that writes it")
    if dataset == "events":
        from precast.engines.spark import spark_session

        return (spark or spark_session(cfg)).read.parquet(path)
    import pandas as pd

    return pd.read_parquet(path)


def run(cfg: Config, dataset: str, run_date: date, spark: SparkSession | None = None,
        *, kinds: Sequence[str] = KINDS) -> ValidationResult:
    """Validate `events`, `features` (each of `kinds`) or `predictions` for `run_date`.

    Raises ValidationFailed after every dataset was validated, if any failed.
    """
    results, errors = [], []
    for kind, path in _targets(cfg, dataset, run_date, kinds):
        df = _read(cfg, dataset, path, spark)
        run_name = f"{gx_suite_name(dataset, kind)}-{run_date.isoformat()}"
        result = validate_frame(cfg, dataset, df, run_name, kind=kind)
        log.info("validate %s on %s: %s (%d failed); Data Docs %s", result.suite, path,
                 "passed" if result.success else "FAILED", len(result.failed), result.docs_path)
        results.append(result)
        if not result.success:
            errors.append(failure_message(result, path))
    if errors:
        from precast.monitoring.alerts import Alert, raise_alerts

        raise_alerts(cfg, [Alert(run_date, "validation_failed", dataset,
                                 errors[0].splitlines()[0][:500], severity="critical")])
        raise ValidationFailed("\n".join(errors))
    if len(results) == 1:
        return results[0]
    return _combine(dataset, results,
                    str(docs_index(cfg)) if cfg.validation.data_docs else NO_DOCS)
