"""The one resolver for SQL files (`sql/`) and expectation suites (`expectations/`).

Both folders ship inside the wheel as `precast.sql` and `precast.expectations`.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

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
