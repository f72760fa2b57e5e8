"""Suites as files: precast's contract for a dataset (`expectations/<dataset>.json`, shipped in
the wheel) followed by the use case's own (`<validation.suites>/<dataset>.json`), parsed into
expectation specs. A kwargs value `{"$config": "events.kind.values"}` is filled from the
Config; `"kinds": [...]` limits an expectation to those feature datasets, and `"when"` to
configs where a path is set or has a value. Pure: no Great Expectations context here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from precast import resources
from precast.config import Config
from precast.errors import NotRetryable

if TYPE_CHECKING:
    from great_expectations.core.expectation_validation_result import (
        ExpectationValidationResult,
    )
    from great_expectations.expectations import Expectation

_ENTRY_KEYS = {"type", "kwargs", "notes", "kinds", "when"}
_DOMAIN_KEYS = ("column", "column_list", "column_A", "column_B")


class SuiteError(NotRetryable, ValueError):
    """A suite file is malformed: unknown expectation type, bad kwargs or $config path."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One suite entry with its $config references resolved."""

    type: str
    kwargs: dict[str, Any]
    notes: str
    kinds: tuple[str, ...] | None = None


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
