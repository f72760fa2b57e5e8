"""Validating a frame (pandas or Spark) against a suite: the result, with the Data Docs page
that shows it, and the one-line failure message naming each failed expectation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from precast.config import Config
from precast.errors import NotRetryable
from precast.validation.context import (
    NO_DOCS,
    _batch_definition,
    _checkpoint,
    _home,
    _page,
    _use_session,
    gx_root,
)
from precast.validation.suites import _plain, suite_specs, summarize

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.core import ExpectationSuiteValidationResult
    from pyspark.sql import DataFrame

class ValidationFailed(NotRetryable, ValueError):
    """A dataset failed its suite; the message names the suite, dataset, failures and page."""


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one suite on one dataset (or, for `features`, on all its kinds)."""

    suite: str
    success: bool
    statistics: Mapping[str, float | None]
    failed: tuple[str, ...]
    docs_path: str


def gx_suite_name(suite_name: str, kind: str | None) -> str:
    """The GX suite (and asset) name: `features.train`, `predictions`, ..."""
    return f"{suite_name}.{kind}" if kind else suite_name


def _is_spark(df: Any) -> bool:
    try:
        from pyspark.sql import DataFrame as SparkFrame
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return False
    return isinstance(df, SparkFrame)


def validate_frame(cfg: Config, suite_name: str, df: pd.DataFrame | DataFrame, run_name: str,
                   *, kind: str | None = None) -> ValidationResult:
    """Run suite `suite_name` (entries for `kind`; None: all) on a pandas or Spark DataFrame."""
    from great_expectations.core.run_identifier import RunIdentifier

    name = gx_suite_name(suite_name, kind)
    specs = suite_specs(cfg, suite_name, kind)
    home = _home(str(gx_root(cfg)))
    spark = _is_spark(df)
    with home.lock:
        bd = _batch_definition(home.context, "spark" if spark else "pandas", name)
        if spark:
            _use_session(home.context, df.sparkSession)
        data_docs = cfg.validation.data_docs
        checkpoint = _checkpoint(home, name, specs, suite_name, bd, data_docs)
        cached = spark and not df.is_cached
        if cached:
            df.persist()
        try:
            result = checkpoint.run(batch_parameters={"dataframe": df},
                                    run_id=RunIdentifier(run_name=run_name))
        finally:
            if cached:
                df.unpersist()
        key, suite_result = next(iter(result.run_results.items()))
        page = _page(home.context, key) if data_docs else NO_DOCS
    return _result(name, suite_result, page)


def _result(name: str, suite_result: ExpectationSuiteValidationResult, page: str
            ) -> ValidationResult:
    failed = tuple(summarize(r) for r in suite_result.results if not r.success)
    stats = {k: _plain(v) for k, v in suite_result.statistics.items()}
    return ValidationResult(name, bool(suite_result.success), stats, failed, page)


def failure_message(result: ValidationResult, dataset: str) -> str:
    """Names the suite, the dataset, each failed expectation and the Data Docs page."""
    lines = "\n".join(f"  - {f}" for f in result.failed)
    return (f"suite {result.suite} failed on {dataset}: {len(result.failed)} of "
            f"{result.statistics.get('evaluated_expectations')} expectations failed\n{lines}\n"
            f"Data Docs: {result.docs_path}")


def _combine(suite: str, results: Sequence[ValidationResult], docs: str) -> ValidationResult:
    """One result for several datasets: all must pass; failures are prefixed by suite."""
    keys = ("evaluated_expectations", "successful_expectations", "unsuccessful_expectations")
    stats: dict[str, float | None] = {k: sum(r.statistics.get(k) or 0 for r in results)
                                      for k in keys}
    evaluated = stats["evaluated_expectations"] or 0
    stats["success_percent"] = 100.0 * (stats["successful_expectations"] or 0) / evaluated \
        if evaluated else None
    failed = tuple(f"[{r.suite}] {f}" for r in results for f in r.failed)
    return ValidationResult(suite, all(r.success for r in results), stats, failed, docs)
