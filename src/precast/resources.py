"""The one resolver for SQL files and expectation suites.

precast's own (`sql/`: the store, lookups, monitoring; `expectations/`: the contracts every
use case's datasets meet) ship inside the wheel as `precast.sql` and `precast.expectations`.
A use case's feature and label SQL and its own suites live in its folder, beside its config
file (:func:`use_case_sql`, :func:`use_case_suite`).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from precast.errors import NotRetryable

if TYPE_CHECKING:
    from precast.config import Config

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _read(package: str, name: str, suffix: str) -> str:
    stem = name.removesuffix(suffix)
    if not _NAME.match(stem):
        raise ValueError(f"bad resource name {name!r}: use lower_snake_case")
    path = resources.files(package).joinpath(stem + suffix)
    if not path.is_file():
        raise FileNotFoundError(f"no {suffix} file named {stem!r} in {package}")
    return path.read_text(encoding="utf-8")


@cache
def sql(name: str) -> str:
    """Text of `sql/<name>.sql` (bind parameters are `:name`)."""
    return _read("precast.sql", name, ".sql")


@cache
def suite(name: str) -> dict[str, Any]:
    """The expectation suite `expectations/<name>.json` as a dict."""
    data: dict[str, Any] = json.loads(_read("precast.expectations", name, ".json"))
    return data


class UseCaseFileError(NotRetryable, FileNotFoundError):
    """A file the use case's config names is missing or unreadable; the message names the
    config field and the path."""


def use_case_sql(cfg: Config, field: str) -> str:
    """The text of the SQL file that config field `features.<field>` names (relative paths
    resolve from the config file's folder)."""
    name = getattr(cfg.features, field)
    path = cfg.resolve(name)
    if not path.is_file():
        raise UseCaseFileError(f"features.{field}: no SQL file {path} (use case {cfg.name}, "
                               f"config in {cfg.folder or Path.cwd()})")
    return path.read_text(encoding="utf-8")


def use_case_suite(cfg: Config, name: str) -> dict[str, Any] | None:
    """The use case's own suite `<validation.suites>/<name>.json`, or None when it has none
    (a use case without a config file has only precast's contracts)."""
    if cfg.folder is None:
        return None
    path = cfg.resolve(cfg.validation.suites) / f"{name}.json"
    if not path.is_file():
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UseCaseFileError(f"{path}: not valid JSON ({exc})") from None
    return data


def statements(name: str) -> list[str]:
    """`sql/<name>.sql` split into statements on lines that end with `;`."""
    text = "\n".join(
        line for line in sql(name).splitlines() if not line.lstrip().startswith("--")
    )
    return [s.strip() for s in text.split(";") if s.strip()]


def statement(name: str) -> str:
    """The single statement of `sql/<name>.sql` (ValueError when it holds several)."""
    found = statements(name)
    if len(found) != 1:
        raise ValueError(f"sql/{name}.sql holds {len(found)} statements; expected one")
    return found[0]
