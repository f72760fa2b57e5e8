"""Typed, validated configuration: one YAML file, `PRECAST_*` environment overrides.

Load once at the edge with :func:`load_config` and pass the result in.
Every field has a default that runs on one machine.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from precast.errors import NotRetryable
from precast.metrics import HIGHER_IS_BETTER, TASK_METRICS, Task

if TYPE_CHECKING:
    from precast.lake import Lake

ENV_PREFIX = "PRECAST_"
# The config file itself, the deployment's list of use cases, the test suite's flags.
# PRECAST_API_KEYS holds raw API keys (`name=key,...`), hashed when `precast serve` starts.
NOT_FIELDS = ("PRECAST_CONFIG", "PRECAST_USE_CASES", "PRECAST_TEST_", "PRECAST_API_KEYS",
              "PRECAST_JVM_CACHE")
DEFAULT_CONFIG = "precast.yaml"


# Query parameters and key=value pairs whose values are secrets: a key that ends in a secret
# word (sslpassword, client_secret, access_token, X-Amz-Signature) or is a short one.
_SECRET_KEYS = (r"(?:[\w.-]*(?:password|passwd|secret|token|api_key|apikey|credential|"
                r"signature)|pwd|pass|key|sig)")
_SECRET_PAIR = re.compile(rf"(?i)\b({_SECRET_KEYS})=([^&\s'\"]+)")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """`url` with its password and secret query parameters replaced by `***` (for logs);
    nothing else in it changes."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # not a URL that urlsplit can take apart: scrub key=value pairs only
        netloc = ""
    userinfo = netloc.rsplit("@", 1)[0] if "@" in netloc else ""
    if ":" in userinfo:
        user, password = userinfo.split(":", 1)
        url = url.replace(f"{user}:{password}@", f"{user}:***@", 1)
    return _SECRET_PAIR.sub(r"\1=***", url)


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted (redact_url) and every `password=...`-like pair
    outside URLs (libpq conninfo, messages) too: the one redaction for messages, alerts,
    run records and the console."""
    return _SECRET_PAIR.sub(r"\1=***", _URL.sub(lambda m: redact_url(m.group(0)), text))


# Spark (and Hadoop) conf keys whose values are secrets: fs.s3a.secret.key, ssl passwords...
_SECRET_CONF_KEY = re.compile(r"(?i)(password|passwd|secret|token|credential|"
                              r"(^|[._-])(access[._-]?)?key($|[._-])|apikey)")


def redact_conf(key: str, value: str) -> str:
    """A conf value fit for a log: `***` when its key names a secret, else redact_text."""
    return "***" if _SECRET_CONF_KEY.search(key) else redact_text(value)


def redact_command(command: list[str]) -> str:
    """A command line fit for a log or an error: every `--conf key=value` through
    redact_conf, every other argument through redact_text."""
    shown = []
    for before, arg in zip(["", *command], command, strict=False):
        if before == "--conf" and "=" in arg:
            key, value = arg.split("=", 1)
            arg = f"{key}={redact_conf(key, value)}"
        shown.append(redact_text(arg))
    return " ".join(shown)


def redact(value: Any) -> Any:
    """`value` with redact_text applied to every string in it (dicts, lists, tuples): for
    params, tags and JSON that leave the process (MLflow, run records)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(item) for item in value)
    return value


def with_search_path(url: str, schema: str) -> str:
    """A PostgreSQL URL whose sessions use `schema` (libpq `options=-c search_path=...`);
    other URLs unchanged. An explicit search_path in the URL wins."""
    parts = urlsplit(url)
    if not parts.scheme.startswith(("postgresql", "postgres")):
        return url
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = query.get("options", "")
    if "search_path" not in options:
        query["options"] = f"{options} -c search_path={schema}".strip()
    return urlunsplit(parts._replace(query=urlencode(query)))


class ConfigError(NotRetryable, ValueError):
    """A configuration value is missing or invalid; the message names the field path."""


class _FieldError(ValueError):
    """A check across sections failed; reported at `where` (a dotted field path)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Clean columns every use case has (the dt partition column is added by extract).
EVENT_ID, EVENT_TIME, PARTITION = "event_id", "ts", "dt"


def _check_path(path: str) -> str:
    """A dotted path into a raw JSON object: non-empty segments, no spaces around dots."""
    if not path or any(not part or part != part.strip() for part in path.split(".")):
        raise ValueError(f"bad field path {path!r}: use dotted names such as properties.plan")
    return path


def _check_column(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"bad column name {name!r}: letters, digits and _ only, not first a digit")
    return name


FieldPath = Annotated[str, AfterValidator(_check_path)]
ColumnName = Annotated[str, AfterValidator(_check_column)]
# A raw field path that defaults to the column's name when empty.
OptionalPath = Annotated[str, AfterValidator(lambda v: v and _check_path(v))]


class KeyMap(_Section):
    """The entity key: clean column `column`, read from raw field `field` (default: the
    column's name). Numbers are taken as their text; objects and arrays are wrong_type."""

    column: ColumnName = "entity_id"
    field: OptionalPath = ""

    @property
    def path(self) -> str:
        return self.field or self.column


class IdMap(_Section):
    """The event id field (clean column `event_id`). Without one (`id: null`) the id is
    derived from the line's content, so exact repeats of a line still collapse."""

    field: FieldPath = EVENT_ID


class TimeMap(_Section):
    """The event time (clean column `ts`, UTC): ISO-8601 text with `Z` or a numeric offset
    and optional fractional seconds, or epoch seconds / milliseconds as JSON numbers."""

    field: FieldPath = EVENT_TIME
    format: Literal["iso8601", "epoch_s", "epoch_ms"] = "iso8601"


class KindMap(_Section):
    """The event kind: clean column `column` from raw field `field` (default: the column's
    name); a value outside `values` (when given) is quarantined as unknown_event_type."""

    column: ColumnName = "event_type"
    field: OptionalPath = ""
    values: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return self.field or self.column


# Numbers beyond this magnitude are invalid unless `min`/`max` say otherwise: every integer
# up to it is exact as a double (2**53 is about 9.0e15), and a sum of 9,000 of them still
# fits a bigint, so feature SQL's sums and casts do not overflow under ANSI mode.
DEFAULT_MAGNITUDE = 1e15


class AttributeMap(_Section):
    """One typed value taken from the raw JSON by dotted path (default: the attribute's name),
    with optional rules; a line that breaks a rule is quarantined as invalid_value:<name>.

    Numbers always have bounds: `min` and `max` when given, else -/+ DEFAULT_MAGNITUDE on
    that side (`max: .inf` lifts it). Doubles are finite unless `finite: false`.
    """

    field: OptionalPath = ""
    type: Literal["string", "long", "double", "boolean"] = "string"
    # a line without it is quarantined as missing_field:<field>; a list: lines of these kinds
    required: bool | tuple[str, ...] = False
    values: tuple[str, ...] = ()  # strings: the allowed values (empty: any)
    min: float | None = None  # numbers: inclusive bounds (default: -/+ DEFAULT_MAGNITUDE)
    max: float | None = None
    finite: bool | None = None  # doubles: NaN and ±Infinity are invalid unless false

    @property
    def finite_only(self) -> bool:
        """Whether NaN and ±Infinity are invalid: doubles, unless `finite: false`."""
        return self.type == "double" and self.finite is not False

    @property
    def bounds(self) -> tuple[float, float] | None:
        """A number's inclusive (low, high) bounds; None for text and booleans."""
        if self.type not in ("long", "double"):
            return None
        return (-DEFAULT_MAGNITUDE if self.min is None else self.min,
                DEFAULT_MAGNITUDE if self.max is None else self.max)

    @model_validator(mode="after")
    def _rules_fit_the_type(self) -> AttributeMap:
        if self.values and self.type != "string":
            raise ValueError(f"values apply to string attributes, not to {self.type}")
        if (self.min is not None or self.max is not None) and self.type not in ("long", "double"):
            raise ValueError(f"min/max apply to long and double attributes, not to {self.type}")
        if self.required in ((), []):
            raise ValueError("required takes true, false or a non-empty list of kinds")
        if self.finite is not None and self.type != "double":
            raise ValueError("finite applies to double attributes only")
        if any(b is not None and b != b for b in (self.min, self.max)):
            raise ValueError("min/max must be numbers, not NaN")
        if (bounds := self.bounds) and bounds[0] > bounds[1]:
            default = " (the default: give max)" if self.max is None else ""
            raise ValueError(f"min {bounds[0]:g} is above max {bounds[1]:g}{default}")
        return self


class EventsConfig(_Section):
    """How raw log lines map onto the clean `events` view that feature SQL reads.

    Clean columns, in this order: event_id, the key's column, ts, the kind's column (unless
    `kind` is null), the attributes, then the objects (nested objects kept whole as JSON
    text, keys sorted). docs/mapping.md is the reference.
    """

    key: KeyMap = KeyMap()
    id: IdMap | None = IdMap()
    time: TimeMap = TimeMap()
    kind: KindMap | None = None
    attributes: dict[ColumnName, AttributeMap] = Field(default_factory=dict)
    objects: dict[ColumnName, FieldPath] = Field(default_factory=dict)  # column -> dotted path

    @property
    def entity_key(self) -> str:
        """The entity key's column name in every dataset (features, labels, predictions)."""
        return self.key.column

    @property
    def columns(self) -> tuple[str, ...]:
        """The clean columns, in order (without the dt partition column)."""
        kind = (self.kind.column,) if self.kind else ()
        return (EVENT_ID, self.key.column, EVENT_TIME, *kind, *self.attributes, *self.objects)

    def attribute_path(self, name: str) -> str:
        return self.attributes[name].field or name

    @model_validator(mode="after")
    def _columns_and_paths_fit(self) -> EventsConfig:
        columns = [*self.columns, PARTITION]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"clean column names must be unique; repeated: {repeated} "
                             f"({EVENT_ID}, {EVENT_TIME} and {PARTITION} are reserved)")
        leaves = [self.key.path, self.time.field, *(self.attribute_path(a) for a in
                                                     self.attributes)]
        leaves += [self.id.field] if self.id else []
        leaves += [self.kind.path] if self.kind else []
        for path in leaves:
            inside = [other for other in leaves if other.startswith(path + ".")]
            if inside:
                raise ValueError(f"field {path!r} cannot be a value and hold {inside[0]!r}; "
                                 "map the whole object under objects instead")
        for name, attribute in self.attributes.items():
            if isinstance(attribute.required, tuple):
                self._check_kinds(name, attribute.required)
        return self

    def _check_kinds(self, name: str, kinds: tuple[str, ...]) -> None:
        """An attribute required for some kinds needs a kind, and (when the kind has values)
        kinds among them."""
        if self.kind is None:
            raise ValueError(f"attribute {name!r} is required for kinds {list(kinds)}, "
                             "but the mapping has no kind")
        unknown = [k for k in kinds if self.kind.values and k not in self.kind.values]
        if unknown:
            raise ValueError(f"attribute {name!r} is required for kinds {unknown} that are "
                             f"not in kind.values")


class ExtractConfig(_Section):
    """Extract: quarantine limit and how far back missing days are filled in."""

    max_quarantine_rate: float = Field(0.05, ge=0, le=1)
    lookback_days: int = Field(90, ge=0)


class FeaturesConfig(_Section):
    """Feature and label SQL, windows and the time split."""

    features_sql: str = "features.sql"
    labels_sql: str = "labels.sql"
    short_window_days: int = Field(7, ge=1)
    long_window_days: int = Field(30, ge=1)
    label_horizon_days: int = Field(14, ge=1)
    snapshot_interval_days: int = Field(7, ge=1)
    train_snapshots: int = Field(3, ge=1)
    categorical: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _windows_ordered(self) -> FeaturesConfig:
        if self.short_window_days >= self.long_window_days:
            raise ValueError("short_window_days must be smaller than long_window_days")
        return self


# The XGBoost objective and eval metric of each task, unless train.params names them.
TASK_PARAMS: dict[str, dict[str, str]] = {
    "binary": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "regression": {"objective": "reg:squarederror", "eval_metric": "rmse"},
}


def objective_fits(task: str, objective: str) -> bool:
    """binary needs probabilities (binary:logistic); regression any reg:/count: objective."""
    if task == "binary":
        return objective == "binary:logistic"
    return objective.startswith(("reg:", "count:"))


def xgboost_params(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """`params` (train.params) over the task's objective and eval metric (TASK_PARAMS)."""
    return {**TASK_PARAMS[task], **params}


class TrainConfig(_Section):
    """XGBoost parameters, seed, device and early stopping. `params.objective` and
    `params.eval_metric` default from model.task (TASK_PARAMS); an objective named here must
    fit the task (binary: binary:logistic; regression: reg:... or count:...)."""

    params: dict[str, Any] = Field(
        default_factory=lambda: {
            "tree_method": "hist", "max_depth": 4, "eta": 0.1, "subsample": 0.9,
            "colsample_bytree": 0.9, "min_child_weight": 5, "max_cat_to_onehot": 8,
        }
    )
    num_boost_round: int = Field(400, ge=1)
    early_stopping_rounds: int = Field(25, ge=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # xgboost: in this process. spark: xgboost.spark on engines.spark.master
    # (precast.model.spark_train)
    engine: Literal["xgboost", "spark"] = "xgboost"
    spark_workers: int = Field(0, ge=0, description="0 = Spark's default parallelism")
    nthread: int = Field(0, ge=0, description="0 = number of cores")
    # What a scheduled (daily) <use case>__training run does: `train` trains and gates; `data_only`
    # runs the data steps only (the features feed monitoring's ground truth) and leaves
    # training to <use case>__monitor's retrain requests and manual runs.
    scheduled_runs: Literal["train", "data_only"] = "train"
    # Feature name -> +1 (score never falls as it rises) or -1 (never rises); passed to
    # XGBoost as monotone_constraints. A name the training data lacks fails training.
    monotone: dict[str, int] = Field(default_factory=dict)

    @field_validator("monotone")
    @classmethod
    def _monotone_directions(cls, v: dict[str, int]) -> dict[str, int]:
        bad = sorted(name for name, direction in v.items() if direction not in (-1, 1))
        if bad:
            raise ValueError(f"monotone directions must be +1 or -1, not for {bad}")
        return v


class ModelConfig(_Section):
    """What is predicted, and the registered model's and experiment's names (default: the
    use case's name)."""

    name: str = ""
    experiment: str = ""
    # binary: the label is 0/1 and the score a probability; regression: the label is a real
    # number and the score the predicted value, in the label's units (precast.metrics).
    task: Task = "binary"
    # What the label means, in words, for reports and model cards ("cancels within 14 days").
    target_description: str = "the label"
    # The model card's prose (every registered version gets a card; see precast.gate.card).
    # Empty: a sentence made of the task and target_description (model_card.intended_use).
    intended_use: str = ""
    known_limits: tuple[str, ...] = (
        "Trained on recent behaviour only: a change in the product or in how events are "
        "logged can shift scores until the next retraining (see monitoring).",
        "Slices with fewer rows than gate.min_slice_rows are not evaluated separately.",
    )


GateMetric = Literal["roc_auc", "pr_auc", "log_loss", "brier", "rmse", "mae", "r2"]


class GateConfig(_Section):
    """Champion policy: floors, calibration, and not worse than the champion overall and on
    every slice with enough rows.

    `metric`, `floors` and the tolerances follow model.task: binary metrics (roc_auc, pr_auc,
    log_loss, brier) or regression ones (rmse, mae, r2); which way is better comes from the
    metric (precast.metrics), and tolerances are in the metric's units. A floor on a metric
    where lower is better (rmse, mae, log_loss, brier, calibration_error) is a ceiling: the
    challenger must be at or below it. With model.task regression the defaults are
    metric rmse, no floors and no max_mean_score_gap (its units are the label's: set it).
    """

    metric: GateMetric = "roc_auc"
    tolerance: float = Field(0.01, ge=0)
    floors: dict[str, float] = Field(default_factory=dict)
    # |mean prediction - mean label| on the test set must stay within this (None: off); for
    # binary the mean label is the observed label rate, for regression it is in label units.
    max_mean_score_gap: float | None = Field(0.05, ge=0)
    # Slice columns of the test set; numeric ones are bucketed by slice_bins (left-closed).
    slices: tuple[str, ...] = ()
    slice_bins: dict[str, tuple[float, ...]] = Field(default_factory=dict)
    min_slice_rows: int = Field(200, ge=1)
    require_slices: bool = True  # every compared slice must be not worse than slice_tolerance
    slice_tolerance: float = Field(0.05, ge=0)  # slices are smaller, so noisier, than the whole

    @field_validator("floors")
    @classmethod
    def _known_floor_metrics(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = set(v) - set(HIGHER_IS_BETTER)
        if unknown:
            raise ValueError(f"unknown metrics in floors: {sorted(unknown)}")
        return v

    @field_validator("slice_bins")
    @classmethod
    def _increasing_bins(cls, v: dict[str, tuple[float, ...]]) -> dict[str, tuple[float, ...]]:
        for column, edges in v.items():
            if not edges or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
                raise ValueError(f"slice_bins.{column} must be increasing, got {list(edges)}")
        return v


DEFAULT_SPARK_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "2g",
    # HotSpot never JIT-compiles a method over 8000 bytes of bytecode: a stage whose generated
    # code is larger (extract's line rules) runs interpreted unless Spark falls back to smaller
    # generated methods (Spark's docs suggest this value)
    "spark.sql.codegen.hugeMethodLimit": "8000",
}


class SparkConfig(_Section):
    """Spark master and conf; `local[*]` runs in-process. A config's `conf` is laid over
    DEFAULT_SPARK_CONF key by key (setting one key keeps the others)."""

    master: str = "local[*]"
    app_name: str = "precast"
    conf: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SPARK_CONF))

    @field_validator("conf", mode="before")
    @classmethod
    def _over_defaults(cls, v: Any) -> Any:
        return {**DEFAULT_SPARK_CONF, **v} if isinstance(v, dict) else v


class BeamConfig(_Section):
    """Beam runner and pipeline options; DirectRunner by default."""

    runner: str = "DirectRunner"
    options: dict[str, Any] = Field(default_factory=lambda: {"direct_running_mode": "in_memory"})
    batch_size: int = Field(32_768, ge=1)  # rows per element and per predict call


class EnginesConfig(_Section):
    spark: SparkConfig = SparkConfig()
    beam: BeamConfig = BeamConfig()


class StoresConfig(_Section):
    """Where things live. Empty values default to folders under PRECAST_HOME."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    lake: str = ""
    # The raw logs, when they live outside the lake: a folder or URL of dt=YYYY-MM-DD/ folders
    # (relative: from the config file's folder). Default: <the use case's lake>/raw/events.
    raw_events: str = ""
    mlflow_tracking_uri: str = ""
    mlflow_artifacts: str = ""
    predictions_url: str = ""
    # PostgreSQL: the use case's schema (default: its name), where its snapshot tables, its
    # predictions_current view and its control tables live. SQLite: one file per use case.
    schema_: str = Field("", alias="schema", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    keep_snapshots: int = Field(5, ge=1)
    swap_lock_timeout_ms: int = Field(1000, ge=1, description="per attempt, waiting for readers")
    swap_attempts: int = Field(10, ge=1)
    writer_role: str = ""  # PostgreSQL: publish as this role (see `precast store setup`)


class ApiKeyConfig(_Section):
    """One API key of the lookup API: who holds it and the sha256 hex of the key (the key
    itself is never in the config: `precast api-key NAME` makes one). `revoked: true`
    refuses it with 401. Its own rate_limit_per_s replaces serve.rate_limit_per_s, with its
    own rate_burst (default: one second's worth); rate_burst alone replaces serve.rate_burst."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    revoked: bool = False
    rate_limit_per_s: float | None = Field(None, gt=0)
    rate_burst: int | None = Field(None, ge=1)


class ServeConfig(_Section):
    """The lookup HTTP API (`precast serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    database_url: str = ""  # default: stores.predictions_url; use a read-only role's URL
    # The score of an entity without a prediction. None: the served model's training mean of
    # the label (binary: its label rate; regression: the mean label). Binary: within [0, 1].
    fallback_score: float | None = None
    max_batch_ids: int = Field(1000, ge=1)
    max_body_bytes: int = Field(262_144, ge=1024)
    pool_size: int = Field(8, ge=1)
    # Single lookups run at most this many statements at once per worker; the calls that
    # arrive meanwhile are answered together by the next statement (fewer round trips).
    query_concurrency: int = Field(1, ge=1)
    workers: int = Field(1, ge=1)
    # API keys (also PRECAST_API_KEYS=name=key,...). None at all: the API is open, and only
    # a loopback host may serve it unless allow_open is true.
    api_keys: list[ApiKeyConfig] = []
    allow_open: bool = False
    # Requests per second per key (a token bucket of rate_burst requests; default: one
    # second's worth); None: unlimited. An open API is one key, "anonymous".
    rate_limit_per_s: float | None = Field(None, gt=0)
    rate_burst: int | None = Field(None, ge=1)
    # Per-key request counts are kept in memory and merged into <space>/serve/usage/<day>.json
    # every usage_flush_s, and at shutdown; metering: false keeps no counts.
    metering: bool = True
    usage_flush_s: float = Field(60.0, gt=0)
    # Every PostgreSQL session of the API: statements cancelled past statement_timeout_ms,
    # connection attempts given up past connect_timeout_s, TCP keepalives from
    # keepalives_idle_s of silence. SQLite: a lookup waits busy_timeout_ms for a lock.
    statement_timeout_ms: int = Field(2000, ge=1)
    connect_timeout_s: int = Field(3, ge=1)
    keepalives_idle_s: int = Field(30, ge=1)
    busy_timeout_ms: int = Field(1000, ge=0)

    @model_validator(mode="after")
    def _unique_key_names(self) -> ServeConfig:
        names = [key.name for key in self.api_keys]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"api_keys names must be unique; given twice: {', '.join(twice)}")
        return self


DRIFT_RULES = ("psi_max", "p_value_min", "missing_rate_increase_max", "oov_rate_max")


class MonitorConfig(_Section):
    """`precast run monitor`: drift and live-performance thresholds, alert targets."""

    psi_max: float = Field(0.2, gt=0)  # population stability index, per feature and score
    p_value_min: float | None = Field(None, gt=0, lt=1)  # tests are stored; alert only if set
    missing_rate_increase_max: float = Field(0.05, ge=0)
    oov_rate_max: float = Field(0.05, ge=0)  # unseen categories among present values
    min_roc_auc: float = Field(0.6, ge=0, le=1)  # binary: live ROC AUC of a labelled snapshot
    # |mean prediction - mean label| of a labelled snapshot (binary: the observed label rate;
    # regression: label units, off (None) unless set). None: stored, never alerted.
    max_bias: float | None = Field(0.05, ge=0)
    max_rmse: float | None = Field(None, gt=0)  # regression: live RMSE of a labelled snapshot
    min_slice_rows: int = Field(200, ge=1)  # per-slice live metrics below this are skipped
    reference_rows: int = Field(200_000, ge=1000)  # training rows sampled as drift reference
    webhook_url: str = ""  # each new alert is POSTed here as JSON (may use ${VAR})
    # Retrain when monitoring alerted in at least retrain_k of the last retrain_n monitored
    # windows, the latest included, and the champion is older than retrain_cooldown_days.
    retrain_k: int = Field(2, ge=1)
    retrain_n: int = Field(3, ge=1)
    retrain_cooldown_days: int = Field(7, ge=0)
    # Per-feature drift limits over the ones above ({feature: {rule: limit}}); a limit of None
    # stores the measure but never alerts on it (for a feature that moves away from any
    # training reference by design, such as a tenure that grows by one every day).
    feature_limits: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    # New alerts are e-mailed to these addresses through Airflow's SMTP connection
    # `smtp_conn_id` (apache-airflow-providers-smtp: host, port, login, extra from_email).
    email_to: list[str] = Field(default_factory=list)
    smtp_conn_id: str = "smtp_default"
    # At-least-once delivery: an alert a target has not accepted is retried whenever alerts
    # are next raised, until it was tried delivery_max_attempts times or is older than
    # delivery_max_age_days (table alert_deliveries).
    delivery_max_attempts: int = Field(10, ge=1)
    delivery_max_age_days: int = Field(7, ge=1)

    @field_validator("webhook_url")
    @classmethod
    def _http_webhook(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://", "${")):
            raise ValueError(f"must be an http:// or https:// URL (or ${{VAR}}), not "
                             f"{redact_url(v)!r}")
        return v

    @field_validator("feature_limits")
    @classmethod
    def _known_rules(cls, v: dict[str, dict[str, float | None]]
                     ) -> dict[str, dict[str, float | None]]:
        for feature, limits in v.items():
            unknown = sorted(set(limits) - set(DRIFT_RULES))
            if unknown:
                raise ValueError(f"unknown drift rules {unknown} for feature {feature!r}; "
                                 f"allowed: {', '.join(DRIFT_RULES)}")
        return v


class DemoConfig(_Section):
    """Defaults for `precast demo-data` and `precast demo`: the use case's data generator
    (a Python file in the use case's folder, or a module name) and its arguments."""

    generator: str = ""

    users: int = Field(20_000, ge=1)
    days: int = Field(60, ge=1)
    seed: int = 7
    start_date: date = date(2026, 1, 1)
    corrupt_fraction: float = Field(0.002, ge=0, le=1)
    drift_day: int | None = None


_AIRFLOW_DEFAULTS = {
    "schedules": {"training": "@daily", "predict": "0 6 * * *"},
    "connections": {"predictions": "precast_predictions", "mlflow": "precast_mlflow",
                    "spark": "precast_spark", "reader": "precast_predictions_reader"},
}


class AirflowConfig(_Section):
    """The one-machine Airflow deployment that `precast airflow up` runs."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    metadata_url: str = ""  # default sqlite:///$PRECAST_HOME/airflow/airflow.db
    dags_folder: str = ""  # default: ./dags, else the dags/ of the source checkout
    parallelism: int = Field(0, ge=0, description="task slots; 0 = one per core, at least 2")
    all_admins: bool = True  # simple auth manager without sign-in, for one machine
    start_timeout_s: int = Field(180, ge=10)
    # The use case's DAGs (<name>__training, ...): cron schedules (UTC) of the timed ones,
    # and the Airflow connections and variable whose values override config fields (see
    # precast.orchestration.tasks). Use cases may share a database: each has its own schema.
    schedules: dict[str, str] = Field(default_factory=dict, validate_default=True)
    connections: dict[str, str] = Field(default_factory=dict, validate_default=True)
    lake_variable: str = "precast_lake"

    @field_validator("schedules", "connections")
    @classmethod
    def _known_keys_over_defaults(cls, v: dict[str, str], info: Any) -> dict[str, str]:
        """The defaults, with the keys given replaced (an unknown key is an error)."""
        defaults = _AIRFLOW_DEFAULTS[info.field_name]
        unknown = sorted(set(v) - set(defaults))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {', '.join(defaults)}")
        return {**defaults, **v}


class ValidationConfig(_Section):
    """Great Expectations runs (`validate_*` steps)."""

    # Every validation updates the Data Docs under PRECAST_HOME/gx (the page a failure names);
    # false skips that rebuild (about a third of a validation's time), e.g. in tests.
    data_docs: bool = True
    # The use case's own suites (<dataset>.json), run after precast's contracts; relative to
    # the config file's folder. A dataset without a file here gets precast's contracts only.
    suites: str = "expectations"


UseCaseName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]

# A regression use case's defaults where binary's do not fit (gate metric and floors) or have
# no meaning in the label's units (the mean gaps); each can be set in the file.
REGRESSION_DEFAULTS: dict[str, dict[str, Any]] = {
    "gate": {"metric": "rmse", "floors": {}, "max_mean_score_gap": None},
    "monitor": {"max_bias": None},
}


def _given(section: Any) -> dict[str, Any]:
    """The fields a section's data sets: a dict as is, a model's explicitly set fields."""
    if isinstance(section, BaseModel):
        return {name: getattr(section, name) for name in section.model_fields_set}
    return dict(section or {})


class Config(_Section):
    """One use case's whole configuration; `home` is PRECAST_HOME, `folder` the folder of the
    config file (relative paths in it resolve from there; None: the working directory)."""

    name: UseCaseName = "precast"
    folder: Path | None = None
    home: Path = Path(".precast")
    events: EventsConfig = EventsConfig()
    extract: ExtractConfig = ExtractConfig()
    features: FeaturesConfig = FeaturesConfig()
    train: TrainConfig = TrainConfig()
    model: ModelConfig = ModelConfig()
    gate: GateConfig = GateConfig()
    validation: ValidationConfig = ValidationConfig()
    engines: EnginesConfig = EnginesConfig()
    stores: StoresConfig = StoresConfig()
    demo: DemoConfig = DemoConfig()
    airflow: AirflowConfig = AirflowConfig()
    serve: ServeConfig = ServeConfig()
    monitor: MonitorConfig = MonitorConfig()

    @model_validator(mode="before")
    @classmethod
    def _defaults_of_use_case_and_task(cls, data: Any) -> Any:
        """model.name and model.experiment default to the use case's name; a regression
        use case's gate and monitor sections start from REGRESSION_DEFAULTS."""
        if isinstance(data, dict):
            name = data.get("name") or "precast"
            model = data.get("model") or {}
            model = dict(model.model_dump() if isinstance(model, ModelConfig) else model)
            model["name"] = model.get("name") or name
            model["experiment"] = model.get("experiment") or name
            data = {**data, "model": model}
            if model.get("task") == "regression":
                data.update({section: {**defaults, **_given(data.get(section))}
                             for section, defaults in REGRESSION_DEFAULTS.items()})
        return data

    @model_validator(mode="after")
    def _fits_the_task(self) -> Config:
        """The objective, gate metric, floors and fallback fit model.task."""
        task = self.model.task
        objective = self.train.params.get("objective")
        if objective is not None and not objective_fits(task, str(objective)):
            raise _FieldError("train.params.objective",
                              f"{objective} does not fit model.task {task} (default: "
                              f"{TASK_PARAMS[task]['objective']})")
        if self.gate.metric not in TASK_METRICS[task]:
            allowed = ", ".join(m for m in get_args(GateMetric) if m in TASK_METRICS[task])
            raise _FieldError("gate.metric", f"{self.gate.metric} is not a {task} metric "
                                             f"(model.task {task}: {allowed})")
        foreign = sorted(set(self.gate.floors) - set(TASK_METRICS[task]))
        if foreign:
            raise _FieldError("gate.floors", f"{foreign} are not {task} metrics (model.task "
                                             f"{task}: {', '.join(TASK_METRICS[task])})")
        fallback = self.serve.fallback_score
        if task == "binary" and fallback is not None and not 0 <= fallback <= 1:
            raise _FieldError("serve.fallback_score",
                              f"{fallback} is not a probability (model.task binary: 0 to 1)")
        return self

    def resolve(self, path: str) -> Path:
        """A path from the config: relative ones resolve from the config file's folder."""
        return Path(path) if Path(path).is_absolute() else (self.folder or Path()) / path

    @property
    def space(self) -> Path:
        """The use case's own folder under PRECAST_HOME: GX context, reports, run records
        and (SQLite) its prediction store."""
        return self.home / self.name

    @property
    def lake_root(self) -> str:
        """The use case's lake: `<stores.lake or PRECAST_HOME/lake>/<name>`."""
        root = self.stores.lake or str((self.home / "lake").resolve())
        return f"{root.rstrip('/')}/{self.name}"

    @property
    def lake(self) -> Lake:
        """The use case's lake paths (raw logs from stores.raw_events when it is set)."""
        from precast.lake import Lake

        raw = self.stores.raw_events
        if raw and "://" not in raw:
            raw = str(self.resolve(raw).resolve())
        return Lake(self.lake_root, raw)

    @property
    def store_schema(self) -> str:
        return self.stores.schema_ or self.name

    @property
    def tracking_uri(self) -> str:
        return self.stores.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_root(self) -> str:
        return self.stores.mlflow_artifacts or (self.home / "mlartifacts").resolve().as_uri()

    @property
    def predictions_url(self) -> str:
        """The use case's prediction store: its PostgreSQL schema, or its SQLite file."""
        own_file = f"sqlite:///{(self.space / 'predictions.db').resolve()}"
        url = self.stores.predictions_url or own_file
        return with_search_path(os.path.expandvars(url), self.store_schema)

    @property
    def serve_url(self) -> str:
        """The database URL the lookup API reads with (a read-only role in production)."""
        url = os.path.expandvars(self.serve.database_url)
        return with_search_path(url, self.store_schema) if url else self.predictions_url

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """A copy with dotted-path overrides applied and validated, e.g. {"gate.tolerance": 0}."""
        data = self.model_dump(mode="json", by_alias=True)
        for dotted, value in overrides.items():
            _set_dotted(data, dotted.split("."), value)
        return _validate(data)


def _set_dotted(data: dict[str, Any], keys: list[str], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config error at {'.'.join(keys)}: {key} is not a section")
    node[keys[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`PRECAST_GATE__TOLERANCE=0.02` → {"gate.tolerance": 0.02} (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name.startswith(NOT_FIELDS):
            continue
        path = name[len(ENV_PREFIX):].lower().replace("__", ".")
        out[path] = raw if path == "home" else yaml.safe_load(raw)
    return out


def _validate(data: dict[str, Any]) -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        error = first.get("ctx", {}).get("error")
        if isinstance(error, _FieldError):
            raise ConfigError(f"config error at {error.where}: {error}") from None
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ConfigError(f"config error at {where}: {first['msg']}") from None


def config_path(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Path:
    """The config file in use: `path`, else PRECAST_CONFIG, else ./precast.yaml; a folder
    (a use case's) means the precast.yaml in it."""
    named = (os.environ if environ is None else environ).get("PRECAST_CONFIG", DEFAULT_CONFIG)
    chosen = Path(path or named)
    return chosen / DEFAULT_CONFIG if chosen.is_dir() else chosen


def load_config(
    path: str | Path | None = None, environ: dict[str, str] | None = None
) -> Config:
    """Read YAML (if present), apply `PRECAST_*` overrides, validate."""
    environ = dict(os.environ if environ is None else environ)
    path = config_path(path, environ)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config error in {path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config error in {path}: top level must be a mapping")
        data = loaded
    elif path.name != DEFAULT_CONFIG:
        raise ConfigError(f"config file not found: {path}")
    for dotted, value in _env_overrides(environ).items():
        _set_dotted(data, dotted.split("."), value)
    if path.exists():
        data["folder"] = str(path.resolve().parent)
    return _validate(data)
