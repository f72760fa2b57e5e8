"""The Great Expectations context: file-backed under `PRECAST_HOME/gx`, built on first use and
cached per home in the process, with its data sources, checkpoints (rebuilt only when a
suite's content changed) and the Data Docs site in
`PRECAST_HOME/gx/uncommitted/data_docs/local_site/`."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from precast.config import Config
from precast.lake import content_hash
from precast.validation.suites import ExpectationSpec, to_expectation

if TYPE_CHECKING:
    from great_expectations.checkpoint import Checkpoint
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext
    from great_expectations.expectations import Expectation
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


SITE = "local_site"
INDEX_LIMIT = 100  # validation results listed on the Data Docs index (keeps rebuilds O(1))
NO_DOCS = "not built (validation.data_docs is false)"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 10}


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
    fingerprint = content_hash([(s.type, s.kwargs, s.notes) for s in specs],
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
