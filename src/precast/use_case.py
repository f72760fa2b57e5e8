"""Use-case folders: which ones a deployment runs (:func:`configured`), the skeleton that
`precast init` writes, and the data generator (`demo.generator`) that `precast demo` and
`demo-data` run.

`demo.generator` names a Python file in the use case's folder (`generate.py`) or an
importable module; either defines

    generate(lake_root, users, days, seed, start_date, corrupt_fraction=0.0, drift_day=None)

which writes raw log lines under `Lake(lake_root).raw_events(day)` and returns an object
with `lines_per_day` (day -> lines written).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from precast.config import Config, ConfigError, config_path, load_config

if TYPE_CHECKING:
    from datetime import date


USE_CASES_ENV = "PRECAST_USE_CASES"


def use_case_paths(environ: dict[str, str] | None = None) -> list[Path]:
    """The config files of the configured use cases: PRECAST_USE_CASES (folders or files,
    separated by the OS path separator), else the one config file in use, if it exists."""
    env = os.environ if environ is None else environ
    named = [p for p in env.get(USE_CASES_ENV, "").split(os.pathsep) if p.strip()]
    paths = [config_path(p.strip()) for p in named] or [config_path(None, dict(env))]
    missing = [str(p) for p in paths if not p.is_file()]
    if named and missing:
        raise FileNotFoundError(f"{USE_CASES_ENV} names no config file at {', '.join(missing)}")
    return [p.resolve() for p in paths if p.is_file()]


def configured(environ: dict[str, str] | None = None) -> list[tuple[Path, Config]]:
    """Every configured use case's config file and config; two with one name, or sharing one
    SQLite store, are refused (ValueError naming both files)."""
    found: dict[str, tuple[Path, Config]] = {}
    sqlite_files: dict[str, Path] = {}
    for path in use_case_paths(environ):
        cfg = load_config(path, environ)
        if cfg.name in found:
            raise ValueError(f"use cases {found[cfg.name][0]} and {path} are both named "
                             f"{cfg.name!r}: give each its own `name:`")
        url = cfg.predictions_url
        if url.startswith("sqlite") and sqlite_files.setdefault(url, path) != path:
            raise ValueError(f"use cases {sqlite_files[url]} and {path} share the SQLite store "
                             f"{url}: give each its own file (on PostgreSQL each gets a schema)")
        found[cfg.name] = (path, cfg)
    return list(found.values())


class Generated(Protocol):
    lines_per_day: dict[str, int]


class Generator(Protocol):
    def __call__(self, lake_root: str, users: int, days: int, seed: int, start_date: date,
                 corrupt_fraction: float = 0.0, drift_day: int | None = None) -> Generated: ...


def generator_module(cfg: Config) -> Any:
    """The module that `demo.generator` names (ConfigError naming the field if unusable)."""
    name = cfg.demo.generator
    if not name:
        raise ConfigError(f"config error at demo.generator: use case {cfg.name} names no data "
                          "generator (a .py file in its folder, or a module)")
    if not name.endswith(".py"):
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"config error at demo.generator: cannot import {name!r} "
                              f"({exc})") from None
    path = cfg.resolve(name).resolve()
    module_name = f"precast_generator_{cfg.name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise ConfigError(f"config error at demo.generator: no Python file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def generator(cfg: Config) -> Generator:
    """The use case's `generate` function (ConfigError naming demo.generator if unusable)."""
    if cfg.stores.raw_events:
        raise ConfigError("config error at stores.raw_events: the demo generator writes its "
                          "logs into the lake; unset stores.raw_events to run the demo")
    found = getattr(generator_module(cfg), "generate", None)
    if not callable(found):
        raise ConfigError(f"config error at demo.generator: {cfg.demo.generator} defines no "
                          "generate()")
    generate: Generator = found
    return generate


SKELETON = ("precast.yaml", "features.sql", "labels.sql", "expectations/events.json",
            "expectations/features.json", "expectations/predictions.json")


def init(folder: Path, name: str | None = None) -> list[Path]:
    """Write a commented use-case skeleton into `folder` (named after it unless `name`);
    refuses to overwrite a file that is there already (FileExistsError)."""
    from importlib import resources

    name = name or re.sub(r"[^a-z0-9_]", "_", folder.resolve().name.lower()).lstrip("0123456789_")
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", name or ""):
        raise ConfigError(f"config error at name: cannot make a use case name of {folder.name!r};"
                          " give --name (lowercase letters, digits and _)")
    targets = [folder / rel for rel in SKELETON]
    if there := [str(t) for t in targets if t.exists()]:
        raise FileExistsError(f"not overwriting {', '.join(there)}")
    source = resources.files("precast.skeleton")
    for rel, target in zip(SKELETON, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.joinpath(rel).read_text(encoding="utf-8")
                          .replace("__NAME__", name), encoding="utf-8")
    return targets
