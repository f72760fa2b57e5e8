"""Raw log lines → clean event columns, by the use case's mapping (`events` in config).

One JSON object per line. Values are read by dotted path with an explicit schema (fast path:
`from_json`); wherever that schema cannot tell a wrong JSON type from a right one (an object
where text is declared, or which field broke a parse), the line's own tokens decide, through
Spark's VARIANT, for those lines only. Every line gets a reason or none (kept):

| reason | when |
| --- | --- |
| `malformed_json` | not a JSON object (with a derived id: or one without a canonical form) |
| `wrong_type:<field>` | a value of the wrong JSON type (an object or array for text, text for |
|  | a number, ...), or a time that is not in the configured format |
| `missing_field:<field>` | the key, id, time or kind, or a `required` attribute (on every |
|  | line, or on lines of the kinds it lists), is null |
| `invalid_utf8:<field>` | the key or id held bytes that are not UTF-8 or an escaped lone |
|  | surrogate: decoded, they would merge with other keys (U+FFFD itself counts too) |
| `unknown_event_type` | the kind is not one of `kind.values` |
| `ts_outside_partition` | the time's UTC day is not the day partition the line came in |
| `invalid_value:<column>` | an attribute breaks its rule (`values`, `min`, `max`, `finite`; |
|  | numbers are bounded and doubles finite by default), or is a whole number no long holds |

Duplicates (`duplicate_event_id`) are marked by extract after this. Without an id field the
event id is `sha256` of the line's canonical JSON (keys sorted, no whitespace), so exact
repeats of a line collapse however their keys are ordered, and reruns give the same ids; a
line with no canonical form (a repeated key, a bare NaN, a lone surrogate) is then
`malformed_json`, and one that is not UTF-8 is hashed as its bytes (so different bytes never
collapse).

Spark's text reader keeps a line's bytes, but parsing decodes every invalid UTF-8 sequence
as U+FFFD and an escaped lone surrogate (`"\\ud800"`) as `?`: two keys that differ only there
would become one entity, so such keys are quarantined (`invalid_utf8`), not merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from precast.config import EVENT_ID, EVENT_TIME, EventsConfig
from precast.lake import content_hash

if TYPE_CHECKING:
    from pyspark.sql import Column
    from pyspark.sql.types import DataType, StructType

MALFORMED, WRONG_TYPE, MISSING = "malformed_json", "wrong_type", "missing_field"
UNKNOWN_KIND, OUTSIDE, INVALID = "unknown_event_type", "ts_outside_partition", "invalid_value"
INVALID_UTF8 = "invalid_utf8"
REPLACEMENT = "\ufffd"  # what decoding writes for bytes that are not UTF-8
# A JSON escape of a lone UTF-16 surrogate (not after an escaped backslash): decoded as "?".
_HIGH, _LOW = r"\\u[dD][89abAB][0-9a-fA-F]{2}", r"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
LONE_SURROGATE = rf"(?<!\\)(?:\\\\)*(?:{_HIGH}(?!{_LOW})|(?<!{_HIGH}){_LOW})"
# schema_of_variant of a whole number outside the long range (19 to 38 digits).
BEYOND_LONG = r"^DECIMAL\((19|[2-3]\d),0\)$"
CORRUPT = "_corrupt_record"
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:?\d{2})$"
# Epoch values outside years 0001-9999 are wrong_type (and cannot overflow a timestamp).
EPOCH_SECONDS_RANGE = (-62_135_596_800, 253_402_300_799)
EPOCH_UNITS = {"epoch_s": 1_000_000, "epoch_ms": 1_000}  # microseconds per unit
MICROS_PER_DAY = 86_400_000_000
# schema_of_variant names of the JSON values each declared type accepts.
ACCEPTS = {"long": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$",
           "double": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,\d+\)|FLOAT|DOUBLE)$",
           "boolean": r"^BOOLEAN$"}


@dataclass(frozen=True)
class Leaf:
    """One value read from the raw JSON: clean column, dotted path, declared type."""

    column: str
    path: str
    type: str  # string | long | double | boolean


def leaves(events: EventsConfig) -> list[Leaf]:
    """Every value read through the parse schema, in clean-column order (objects excluded)."""
    time_type = "string" if events.time.format == "iso8601" else "double"
    out = [Leaf(EVENT_ID, events.id.field, "string")] if events.id else []
    out += [Leaf(events.key.column, events.key.path, "string"),
            Leaf(EVENT_TIME, events.time.field, time_type)]
    out += [Leaf(events.kind.column, events.kind.path, "string")] if events.kind else []
    out += [Leaf(name, events.attribute_path(name), attribute.type)
            for name, attribute in events.attributes.items()]
    return out


def parents(events: EventsConfig) -> list[str]:
    """Every proper prefix of a leaf's path: each must be an object when present."""
    found: list[str] = []
    for leaf in leaves(events):
        parts = leaf.path.split(".")
        found += [".".join(parts[:i]) for i in range(1, len(parts))]
    return list(dict.fromkeys(found))


def _spark_type(kind: str) -> DataType:
    from pyspark.sql import types as T

    return {"string": T.StringType(), "long": T.LongType(), "double": T.DoubleType(),
            "boolean": T.BooleanType()}[kind]


def mapping_version(events: EventsConfig) -> str:
    """The version of a mapping, kept in each extracted day's manifest: clean events
    extracted under another mapping have other columns, values or quarantine reasons."""
    return content_hash("events mapping", events.model_dump(mode="json"))


def parse_schema(events: EventsConfig) -> StructType:
    """The nested schema `from_json` reads every leaf with (plus the corrupt-record column)."""
    from pyspark.sql import types as T

    tree: dict[str, Any] = {}
    for leaf in leaves(events):
        *outer, last = leaf.path.split(".")
        node = tree
        for part in outer:
            node = node.setdefault(part, {})
        node[last] = _spark_type(leaf.type)

    def struct(node: dict[str, Any]) -> StructType:
        return T.StructType([T.StructField(name, struct(sub) if isinstance(sub, dict) else sub)
                             for name, sub in node.items()])

    return T.StructType([*struct(tree).fields, T.StructField(CORRUPT, T.StringType())])


def json_path(path: str) -> str:
    """`a.b` → `$['a']['b']` (VARIANT path syntax; any character but `.` in a name)."""
    return "$" + "".join("['" + part.replace("'", "\\'") + "']" for part in path.split("."))


def _parsed(path: str) -> Column:
    """The parsed value at `path` (`j` is the from_json struct)."""
    from pyspark.sql import functions as F

    node = F.col("j")
    for part in path.split("."):
        node = node.getField(part)
    return node


def _variant_at(path: str) -> Column:
    """The line's own value at `path`, as VARIANT (null when absent)."""
    from pyspark.sql import functions as F

    return F.variant_get(F.try_parse_json("value"), json_path(path), "variant")


def _variant_type(path: str) -> Column:
    """The JSON type of the line's own value at `path` (null when absent)."""
    from pyspark.sql import functions as F

    return F.schema_of_variant(_variant_at(path))


def _is_container(path: str) -> Column:
    kind = _variant_type(path)
    return kind.startswith("OBJECT") | kind.startswith("ARRAY")


def _present_and_not(path: str, accepted: str) -> Column:
    """True where the line has a non-null value at `path` whose JSON type does not match the
    regular expression `accepted`."""
    from pyspark.sql import functions as F

    found = _variant_type(path)
    return found.isNotNull() & (found != F.lit("VOID")) & ~found.rlike(accepted)


def _present_not_object(path: str) -> Column:
    """True where the line has a non-null value at `path` that is not an object."""
    return _present_and_not(path, "^OBJECT")


def _wrong_type(kind: str, path: str) -> Column:
    """True where the line's value at `path` is present and not of the declared `kind`."""
    return _is_container(path) if kind == "string" else _present_and_not(path, ACCEPTS[kind])


def _first_wrong_type(events: EventsConfig) -> Column:
    """For a line `from_json` could not read: `wrong_type:<the first field at fault>`."""
    from pyspark.sql import functions as F

    reason = None
    for parent in parents(events):
        reason = _when(reason, _present_not_object(parent), f"{WRONG_TYPE}:{parent}")
    for leaf in leaves(events):
        reason = _when(reason, _wrong_type(leaf.type, leaf.path), f"{WRONG_TYPE}:{leaf.path}")
    for name, attribute in events.attributes.items():  # a whole number no long can hold
        if attribute.type == "long":
            beyond = _variant_type(events.attribute_path(name)).rlike(BEYOND_LONG)
            reason = _when(reason, beyond, f"{INVALID}:{name}")
    return (reason.otherwise(F.lit(WRONG_TYPE)) if reason is not None else F.lit(WRONG_TYPE))


def _when(chain: Column | None, test: Column, reason: str) -> Column:
    from pyspark.sql import functions as F

    return F.when(test, F.lit(reason)) if chain is None else chain.when(test, F.lit(reason))


def _only_where(guard: Column, test: Column) -> Column:
    """`guard AND test`, with `test` evaluated only where `guard` holds.

    Spark's common-subexpression elimination hoists an expression that a row's conditions
    repeat (the line's VARIANT parse, a regular expression over the whole line) and then
    evaluates it on every row, `AND` notwithstanding; inside a CASE branch it stays lazy.
    """
    from pyspark.sql import functions as F

    return F.coalesce(F.when(guard, test), F.lit(False))


def event_time(events: EventsConfig) -> Column:
    """The event time as a UTC timestamp, null when the value is not in the format."""
    from pyspark.sql import functions as F

    raw = _parsed(events.time.field)
    if events.time.format == "iso8601":
        return F.when(raw.rlike(ISO_PATTERN), raw.try_cast("timestamp"))
    low, high = EPOCH_SECONDS_RANGE
    unit = EPOCH_UNITS[events.time.format]
    seconds = raw * F.lit(unit / 1_000_000)
    return F.when(~F.isnan(raw) & seconds.between(low, high),
                  F.timestamp_micros(F.round(raw * F.lit(unit)).cast("long")))


def utc_day(ts: Column) -> Column:
    """The UTC calendar day of a timestamp, whatever the session time zone."""
    from pyspark.sql import functions as F

    return F.date_from_unix_date(F.floor(F.unix_micros(ts) / F.lit(MICROS_PER_DAY)).cast("int"))


def _required(events: EventsConfig) -> list[tuple[Leaf, Column | None]]:
    """(leaf, the lines it is required on: None for every line) for each required value."""
    from pyspark.sql import functions as F

    must: dict[str, Column | None] = dict.fromkeys(
        [EVENT_ID, events.key.column, EVENT_TIME, *([events.kind.column] if events.kind else [])])
    for name, a in events.attributes.items():
        if isinstance(a.required, tuple) and events.kind:
            kind = _parsed(events.kind.path)
            must[name] = F.coalesce(kind.isin(list(a.required)), F.lit(False))
        elif a.required:
            must[name] = None
    return [(leaf, must[leaf.column]) for leaf in leaves(events) if leaf.column in must]


def _invalid(events: EventsConfig) -> list[tuple[str, Column]]:
    """(attribute, test) for every attribute rule; null values pass (see `required`).

    Numbers are always bounded (`AttributeMap.bounds`); doubles are finite unless
    `finite: false`, which lets NaN and ±Infinity through every rule.
    """
    from pyspark.sql import functions as F

    out = []
    for name, a in events.attributes.items():
        value, tests = _parsed(events.attribute_path(name)), []
        if a.values:
            tests.append(~value.isin(list(a.values)))
        nonfinite = F.isnan(value) | value.isin(float("inf"), float("-inf"))  # doubles only
        if a.finite_only:
            tests.append(nonfinite)
        if a.bounds is not None:
            low, high = a.bounds
            outside = (value < F.lit(low)) | (value > F.lit(high))
            tests.append(~nonfinite & outside if a.type == "double" and not a.finite_only
                         else outside)
        for test in tests:
            out.append((name, F.coalesce(test, F.lit(False))))
    return out


def _undecodable(text: Column) -> Column:
    """True where decoded text may stand for other bytes: it holds U+FFFD, or a `?` in a
    line with an escaped lone surrogate (which is decoded as `?`)."""
    from pyspark.sql import functions as F

    lone = F.col("value").rlike(LONE_SURROGATE)
    return F.coalesce(text.contains(REPLACEMENT), F.lit(False)) | _only_where(
        text.contains("?"), lone)


def _identities(events: EventsConfig) -> list[Leaf]:
    """The leaves that name things (the id when mapped, the key): two that decode alike merge."""
    names = {EVENT_ID, events.key.column}
    return [leaf for leaf in leaves(events) if leaf.column in names]


def _no_canonical_form(events: EventsConfig) -> Column:
    """True where the id is derived and the line has no canonical JSON (a repeated key, a bare
    NaN or Infinity, a lone surrogate): VARIANT cannot read it, so it would have no id."""
    from pyspark.sql import functions as F

    return F.lit(False) if events.id else F.try_parse_json("value").isNull()


def reason(events: EventsConfig) -> Column:
    """The quarantine reason of a parsed line (`value`, `j`, `dt`), or null for a good line.

    The checks run in the order of the module's table; the first that fails names the line.
    """
    from pyspark.sql import functions as F

    corrupt = F.col(f"j.{CORRUPT}").isNotNull()
    not_object = F.col("j").isNull() | (corrupt & F.json_object_keys("value").isNull())
    chain = F.when(not_object | _no_canonical_form(events), F.lit(MALFORMED)).when(
        corrupt, _first_wrong_type(events))
    for leaf in leaves(events):  # text that starts like a container: the raw token decides
        if leaf.type == "string":
            text = _parsed(leaf.path)
            looks = text.startswith("{") | text.startswith("[")
            chain = chain.when(_only_where(looks, _is_container(leaf.path)),
                               F.lit(f"{WRONG_TYPE}:{leaf.path}"))
    for path in events.objects.values():
        chain = chain.when(_present_not_object(path), F.lit(f"{WRONG_TYPE}:{path}"))
    for leaf, where in _required(events):
        missing = _parsed(leaf.path).isNull()
        chain = chain.when(missing if where is None else where & missing,
                           F.lit(f"{MISSING}:{leaf.path}"))
    for leaf in _identities(events):
        chain = chain.when(_undecodable(_parsed(leaf.path)), F.lit(f"{INVALID_UTF8}:{leaf.path}"))
    if events.kind and events.kind.values:
        kind = _parsed(events.kind.path)
        chain = chain.when(~kind.isin(list(events.kind.values)), F.lit(UNKNOWN_KIND))
    ts = event_time(events)
    chain = chain.when(ts.isNull(), F.lit(f"{WRONG_TYPE}:{events.time.field}"))
    chain = chain.when(utc_day(ts) != F.col("dt"), F.lit(OUTSIDE))
    for name, test in _invalid(events):
        chain = chain.when(test, F.lit(f"{INVALID}:{name}"))
    return chain


def clean_values(events: EventsConfig) -> list[Column]:
    """The clean columns of a parsed line (`value`, `j`), in `events.columns` order."""
    from pyspark.sql import functions as F

    out = []
    for leaf in leaves(events):
        if leaf.column == EVENT_TIME:
            out.append(event_time(events).alias(EVENT_TIME))
        else:
            out.append(_parsed(leaf.path).alias(leaf.column))
    if not events.id:  # a line that is not UTF-8 is hashed as its own bytes
        canonical = F.when(F.is_valid_utf8("value"), F.to_json(F.try_parse_json("value")))
        out.insert(0, F.sha2(F.coalesce(canonical, F.col("value")), 256).alias(EVENT_ID))
    for column, path in events.objects.items():
        value = _variant_at(path)
        out.append(F.when(F.schema_of_variant(value).startswith("OBJECT"),
                          F.to_json(value)).alias(column))
    return out
