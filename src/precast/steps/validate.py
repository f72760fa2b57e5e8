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
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from precast import lake as lk
from precast import resources
from precast.config import Config
from precast.errors import NotRetryable

if TYPE_CHECKING:
    import pandas as pd
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

DATASETS = ("events", "features", "predictions")
FEATURE_KINDS = ("train", "test", "inference")
SITE = "local_site"
INDEX_LIMIT = 100  # validation results listed on the Data Docs index (keeps rebuilds O(1))
NO_DOCS = "not built (validation.data_docs is false)"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}
_ENTRY_KEYS = {"type", "kwargs", "notes", "kinds", "when"}
_DOMAIN_KEYS = ("column", "column_list", "column_A", "column_B")


class SuiteError(NotRetryable, ValueError):
    """A suite file is malformed: unknown expectation type, bad kwargs or $config path."""


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


@dataclass(frozen=True)
class ExpectationSpec:
    """One suite entry with its $config references resolved."""

    type: str
    kwargs: dict[str, Any]
    notes: str
    kinds: tuple[str, ...] | None = None


# ---------------------------------------------------------------- suites (pure)


def resolve_config_refs(value: Any, cfg: Config) -> Any:
    """`value` with every `{"$config": "a.b"}` replaced by that Config value (tuples → lists)."""
    if isinstance(value, dict):
        if set(value) == {"$config"}:
            return _plain(_config_value(cfg, str(value["$config"])))
        return {k: resolve_config_refs(v, cfg) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_config_refs(v, cfg) for v in value]
    return value


def _config_value(cfg: Config, dotted: str) -> Any:
    """The Config value at `dotted` (sections and mappings alike: events.attributes.plan)."""
    node: Any = cfg
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif not isinstance(node, dict) and hasattr(node, part):
            node = getattr(node, part)
        else:
            raise SuiteError(f"unknown config path {dotted!r} in a $config reference")
    return node


def _plain(value: Any) -> Any:
    """JSON-like Python values: tuples → lists, numpy scalars → Python scalars, NaN → None."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def suite_specs(cfg: Config, name: str, kind: str | None = None) -> list[ExpectationSpec]:
    """precast's and the use case's entries for dataset `name` that apply to `kind` (None:
    all) under this config."""
    docs = [(f"precast's {name}", resources.suite(name))]
    if (own := resources.use_case_suite(cfg, name)) is not None:
        docs.append((f"{cfg.name}'s {name}", own))
    specs = []
    for label, doc in docs:
        entries = doc.get("expectations")
        if not isinstance(entries, list) or (not entries and label.startswith("precast")):
            raise SuiteError(f"suite {label}: 'expectations' must be a non-empty list")
        specs += [_spec(cfg, label, i, entry) for i, entry in enumerate(entries)
                  if _applies(cfg, label, i, entry)]
    return [s for s in specs if kind is None or s.kinds is None or kind in s.kinds]


def _applies(cfg: Config, suite: str, index: int, entry: Any) -> bool:
    """Whether an entry's `when` holds: a config path that is set, or paths with values."""
    when = entry.get("when") if isinstance(entry, dict) else None
    if when is None:
        return True
    try:
        if isinstance(when, str):
            return bool(_config_value(cfg, when))
        if isinstance(when, dict):
            return all(_config_value(cfg, path) == value for path, value in when.items())
    except SuiteError as exc:
        raise SuiteError(f"suite {suite}, expectation #{index}: when: {exc}") from None
    raise SuiteError(f"suite {suite}, expectation #{index}: 'when' must be a config path "
                     "or an object of config paths and values")


def _spec(cfg: Config, suite: str, index: int, entry: Any) -> ExpectationSpec:
    where = f"suite {suite}, expectation #{index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise SuiteError(f"{where}: needs a string 'type'")
    where += f" ({entry['type']})"
    if unknown := set(entry) - _ENTRY_KEYS:
        raise SuiteError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(entry.get("kwargs", {}), dict):
        raise SuiteError(f"{where}: 'kwargs' must be an object")
    if not str(entry.get("notes", "")).strip():
        raise SuiteError(f"{where}: every expectation needs 'notes' saying why it exists")
    kinds = entry.get("kinds")
    try:
        kwargs = resolve_config_refs(entry.get("kwargs", {}), cfg)
    except SuiteError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    return ExpectationSpec(entry["type"], kwargs, str(entry["notes"]),
                           tuple(kinds) if kinds is not None else None)


def call_text(type_: str, kwargs: Mapping[str, Any], keys: Sequence[str] | None = None) -> str:
    """`type(k=v, ...)` for messages and Data Docs; long lists are shortened."""
    shown = [(k, v) for k, v in kwargs.items() if (keys is None or k in keys) and k != "batch_id"]
    return f"{type_}({', '.join(f'{k}={_short(v)}' for k, v in shown)})"


def _short(value: Any, limit: int = 8) -> str:
    value = _plain(value)
    if isinstance(value, list) and len(value) > limit:
        return f"[{', '.join(map(repr, value[:limit]))}, ... {len(value) - limit} more]"
    if isinstance(value, dict) and {"column", "operator"} <= set(value):
        column = value["column"]
        column = column.get("name") if isinstance(column, dict) else column
        return f"{column} {value['operator']} {value.get('parameter')!r}"
    if isinstance(value, float):
        return format(value, ".6g")
    return repr(value) if not isinstance(value, str) else value


def to_expectation(spec: ExpectationSpec, suite: str) -> Expectation:
    """The GX Expectation for a spec; its Data Docs description names the type and the why."""
    from great_expectations.exceptions import ExpectationNotFoundError
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    description = f"{call_text(spec.type, spec.kwargs)}: {spec.notes}"
    try:
        return ExpectationConfiguration(
            type=spec.type, kwargs=spec.kwargs, notes=spec.notes, description=description
        ).to_domain_obj()
    except ExpectationNotFoundError:
        raise SuiteError(
            f"suite {suite}: unknown expectation type {spec.type!r} "
            "(not a Great Expectations expectation)") from None
    except ValueError as exc:  # pydantic validation of the kwargs
        raise SuiteError(f"suite {suite}: bad kwargs for {spec.type}: {exc}") from None


def summarize(result: ExpectationValidationResult) -> str:
    """One line for a failed expectation: what it checked, on which column, and what it saw."""
    config = result.expectation_config
    kwargs = dict(config.kwargs) if config is not None else {}
    head = call_text(config.type if config is not None else "?", kwargs, _DOMAIN_KEYS)
    if error := _exception_message(result.exception_info or {}):
        return f"{head}: error: {error}"
    res = result.result or {}
    if res.get("unexpected_count") is not None:
        sample = _plain(list(res.get("partial_unexpected_list") or [])[:3])
        return f"{head}: {res['unexpected_count']} unexpected, e.g. {sample}"
    mismatched = (res.get("details") or {}).get("mismatched") or {}
    if mismatched.get("missing"):
        return f"{head}: missing columns {_plain(mismatched['missing'])}"
    if "observed_value" in res:
        return f"{head}: observed {_short(res['observed_value'])}"[:400]
    return f"{head}: failed"


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """The first error GX caught for an expectation (flat or keyed by metric), if any."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))[:300]
    for value in info.values():
        if isinstance(value, Mapping) and value.get("raised_exception"):
            return str(value.get("exception_message"))[:300]
    return None


# ---------------------------------------------------------------- GX context


@dataclass
class _Home:
    """A file-backed GX context under one PRECAST_HOME, and the lock that serialises runs."""

    context: AbstractDataContext
    lock: threading.RLock = field(default_factory=threading.RLock)
    checkpoints: dict[str, tuple[str, Checkpoint]] = field(default_factory=dict)


@lru_cache(maxsize=8)
def _home(root: str) -> _Home:
    """The GX context under `root` (scaffolded on first use), configured once."""
    import great_expectations as gx

    context = gx.get_context(mode="file", context_root_dir=root)
    _configure(context)
    log.info("great expectations context at %s", root)
    return _Home(context)


def _configure(context: AbstractDataContext) -> None:
    """No analytics or progress bars; the Data Docs index lists only recent runs.

    Writes `great_expectations.yml` only when a setting differs, so reuse is read-only.
    """
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if context.config.analytics_enabled is not False:
        context.enable_analytics(False)
    bars: Any = context.progress_bars  # a ProgressBarsConfig (an untyped dict)
    if bars is None or bars.get("globally") is not False:
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    site = dict(context.list_data_docs_sites()[SITE])
    index = {"class_name": "DefaultSiteIndexBuilder", "validation_results_limit": INDEX_LIMIT}
    if site.get("site_index_builder") != index or site.get("show_how_to_buttons"):
        context.update_data_docs_site(
            SITE, {**site, "site_index_builder": index, "show_how_to_buttons": False})  # type: ignore[typeddict-item]


def gx_root(cfg: Config) -> Path:
    """Where the GX context lives: `PRECAST_HOME/gx`."""
    return (cfg.space / "gx").resolve()


def docs_index(cfg: Config) -> Path:
    """The Data Docs index page under PRECAST_HOME."""
    return gx_root(cfg) / "uncommitted" / "data_docs" / SITE / "index.html"


def _batch_definition(context: AbstractDataContext, engine: str, asset: str
                      ) -> BatchDefinition[Any]:
    """A whole-DataFrame batch definition on the `pandas` or `spark` data source."""
    sources = context.data_sources
    source: Any
    try:
        source = sources.get(engine)
    except KeyError:
        # add_spark() tests its connection with SparkSession.builder.getOrCreate(): called
        # only while our session is alive, it returns ours and starts nothing.
        source = (sources.add_spark(engine, persist=False) if engine == "spark"
                  else sources.add_pandas(engine))
    try:
        data_asset = source.get_asset(asset)
    except LookupError:
        data_asset = source.add_dataframe_asset(asset)
    definition: BatchDefinition[Any]
    try:
        definition = data_asset.get_batch_definition("whole")
    except KeyError:
        definition = data_asset.add_batch_definition_whole_dataframe("whole")
    return definition


def _use_session(context: AbstractDataContext, spark: SparkSession) -> None:
    """Make the GX Spark data source use our session (never one GX builds itself)."""
    source: Any = context.data_sources.get("spark")
    engine = source._execution_engine
    if source._spark is not spark or (engine is not None and engine.spark is not spark):
        source._spark = spark  # read by get_execution_engine(); the public API has no setter
        source._execution_engine = None


def _checkpoint(home: _Home, name: str, specs: list[ExpectationSpec], suite_name: str,
                batch_definition: BatchDefinition[Any], data_docs: bool) -> Checkpoint:
    """The checkpoint for `name`, rebuilt in the store only when its content changed.

    GX's add_or_update compares every expectation pair (slow for big suites), so the suite
    carries a fingerprint in its meta and unchanged suites are reused as stored.
    """
    fingerprint = lk.content_hash([(s.type, s.kwargs, s.notes) for s in specs],
                                  batch_definition.data_asset.datasource.name, data_docs)
    cached = home.checkpoints.get(name)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    context = home.context
    checkpoint = _stored_checkpoint(context, name, fingerprint)
    if checkpoint is None:
        expectations = [to_expectation(s, suite_name) for s in specs]
        checkpoint = _add_checkpoint(context, name, fingerprint, expectations, batch_definition,
                                     data_docs)
    home.checkpoints[name] = (fingerprint, checkpoint)
    return checkpoint


def _stored_checkpoint(context: AbstractDataContext, name: str, fingerprint: str
                       ) -> Checkpoint | None:
    """The stored checkpoint when its suite has this fingerprint; else delete stale parts."""
    from great_expectations.exceptions import DataContextError

    try:
        suite = context.suites.get(name)
        if (suite.meta or {}).get("precast_fingerprint") == fingerprint:
            return context.checkpoints.get(name)
    except DataContextError:
        pass
    for factory in (context.checkpoints, context.validation_definitions, context.suites):
        try:
            factory.delete(name)
        except DataContextError:
            pass
    return None


def _add_checkpoint(context: AbstractDataContext, name: str, fingerprint: str,
                    expectations: list[Expectation], batch_definition: BatchDefinition[Any],
                    data_docs: bool) -> Checkpoint:
    """Store suite, validation definition and a checkpoint (updating the Data Docs, if on)."""
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction

    suite = context.suites.add(gx.ExpectationSuite(
        name=name, expectations=expectations, meta={"precast_fingerprint": fingerprint}))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=batch_definition, suite=suite))
    return context.checkpoints.add(gx.Checkpoint(
        name=name, validation_definitions=[definition], result_format=RESULT_FORMAT,
        actions=[UpdateDataDocsAction(name="data_docs", site_names=[SITE])] if data_docs
        else []))


def _page(context: AbstractDataContext, key: Any) -> str:
    """The local path of the Data Docs page for one validation result."""
    urls = context.get_docs_sites_urls(resource_identifier=key, site_names=[SITE])
    url = urls[0]["site_url"] if urls else ""
    return unquote(urlparse(url).path) if url and url.startswith("file:") else str(url)


# ---------------------------------------------------------------- validation


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
    if unknown := [k for k in kinds if k not in FEATURE_KINDS]:
        raise ValueError(f"unknown features kinds {unknown}; expected {FEATURE_KINDS}")
    return [(kind, lake.dataset(kind, run_date)) for kind in kinds]


def _read(cfg: Config, dataset: str, path: str, spark: SparkSession | None) -> Any:
    """Events as a Spark DataFrame (our session); features and predictions as pandas."""
    if not lk.exists(path):
        raise FileNotFoundError(f"no {dataset} data at {path}; run the step that writes it")
    if dataset == "events":
        from precast.engines.spark import spark_session

        return (spark or spark_session(cfg)).read.parquet(path)
    import pandas as pd

    return pd.read_parquet(path)


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


def run(cfg: Config, dataset: str, run_date: date, spark: SparkSession | None = None,
        *, kinds: Sequence[str] = FEATURE_KINDS) -> ValidationResult:
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
