"""Beam pipeline options from config: the runner is always named explicitly.

In apache-beam 2.77 `DirectRunner` is the `SwitchingDirectRunner`, which first tries the
Prism runner: it downloads a Go binary from GitHub (fails offline, and with network it runs
the job outside this process), then falls back. So `DirectRunner` here means Beam's
in-process `FnApiRunner`, which honours `direct_running_mode` (`in_memory`,
`multi_threading`, `multi_processing`) and `direct_num_workers`. Every other runner name
(`FlinkRunner`, `SparkRunner`, `DataflowRunner`, `PrismRunner`, ...) is passed through.
"""

from __future__ import annotations

from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from precast.config import Config

LOCAL_RUNNER = "FnApiRunner"
_DIRECT_ALIASES = frozenset({"direct", "directrunner"})


def resolve_runner(name: str) -> str:
    """The runner Beam should get for a configured name (`DirectRunner` → `FnApiRunner`)."""
    return LOCAL_RUNNER if name.strip().lower() in _DIRECT_ALIASES else name


def pipeline_options(cfg: Config, **extra: Any) -> PipelineOptions:
    """Options from `cfg.engines.beam` (runner + options), with `extra` overriding them."""
    merged = {**cfg.engines.beam.options, **extra}
    runner = resolve_runner(str(merged.pop("runner", cfg.engines.beam.runner)))
    return PipelineOptions(flags=[], runner=runner, **merged)  # flags=[]: never sys.argv
