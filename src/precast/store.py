"""The prediction store: snapshot tables behind the `predictions_current` view.

:func:`publish` loads predictions into a new table `predictions_<snapshot_id>` (PostgreSQL:
COPY; SQLite: executemany in one transaction), keys it on `entity_id`, then in one short
transaction repoints `predictions_current` at it and marks the snapshot published in
`prediction_snapshots`. Readers see the old snapshot or the new one, never a mix; a failure
at any point leaves the served snapshot untouched. :func:`rollback` repoints the view at a
retained snapshot.

SQL lives in `sql/store_*.sql`. Table names cannot be bind parameters, so those files use
the identifier placeholders `{{table}}` / `{{table_key}}`; only :func:`_render` fills them, with
a name built from the integer snapshot id, checked against a strict pattern and quoted by
the dialect. Values are always `:name` binds. SQLite and PostgreSQL (`postgresql+psycopg`)
are supported.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine

from precast.resources import statements

log = logging.getLogger(__name__)

SNAPSHOTS_TABLE = "prediction_snapshots"
CURRENT_VIEW = "predictions_current"
_ROW_SCHEMA = pa.schema(
    [("entity_id", pa.string()), ("score", pa.float64()),
     ("scored_at", pa.timestamp("us", tz="UTC"))]
)
_TABLE_NAME = re.compile(r"predictions_[1-9][0-9]{0,17}")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class StoreError(Exception):
    """The prediction store refused or failed an operation; the message says why."""


class PredictionsInputError(StoreError, ValueError):
    """The predictions handed to publish break the contract (columns, nulls, metadata)."""


class EmptyPredictionsError(PredictionsInputError):
    """Publishing zero rows is refused: it would blank out every lookup."""


class DuplicateEntityError(PredictionsInputError):
    """An entity id occurs more than once in the predictions."""


class NoSnapshotError(StoreError, LookupError):
    """No prediction snapshot has been published to this store yet."""


class SnapshotNotFoundError(StoreError, LookupError):
    """The requested snapshot does not exist or is not retained (cannot be served)."""


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot is: its date and the model and data versions that produced it."""

    snapshot_date: date
    model_name: str
    model_version: str
    data_version: str
    note: str | None = None


@dataclass(frozen=True)
class SnapshotInfo:
    """One row of `prediction_snapshots`; `current` is True for the one the view serves."""

    snapshot_id: int
    snapshot_date: date
    table_name: str | None
    model_name: str
    model_version: str
    data_version: str
    row_count: int | None
    created_at: datetime
    published_at: datetime | None
    status: str
    note: str | None
    current: bool = False


# ---------------------------------------------------------------- engines and SQL text


def make_engine(url: str | sa.URL) -> Engine:
    """An engine for the store: SQLite (WAL, foreign keys, real transactions) or PostgreSQL."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    if backend in {"postgresql", "postgres"}:
        if parsed.drivername in {"postgresql", "postgres"}:
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_driver_name() != "psycopg":
            raise StoreError(f"PostgreSQL store needs the psycopg (3) driver, not "
                             f"{parsed.get_driver_name()!r}: use postgresql+psycopg://")
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise StoreError(f"unsupported prediction store {backend!r}: use sqlite:// or postgresql://")


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    """Let SQLAlchemy own transactions (pysqlite would skip BEGIN before DDL); set pragmas."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    """Emit our own BEGIN so DDL (the view swap) is transactional too."""
    conn.exec_driver_sql("BEGIN")


@contextmanager
def _engine(engine_or_url: Engine | str | sa.URL) -> Iterator[Engine]:
    """Use the given engine, or make one for a URL and dispose of it afterwards."""
    if isinstance(engine_or_url, Engine):
        yield engine_or_url
        return
    engine = make_engine(engine_or_url)
    try:
        yield engine
    finally:
        engine.dispose()


def table_name(snapshot_id: int) -> str:
    """`predictions_<snapshot_id>`: the only way a snapshot table name is made."""
    if isinstance(snapshot_id, bool) or not isinstance(snapshot_id, int) or snapshot_id < 1:
        raise ValueError(f"snapshot id must be a positive integer, got {snapshot_id!r}")
    return _checked_table(f"predictions_{snapshot_id}")


def _checked_table(name: str) -> str:
    if not _TABLE_NAME.fullmatch(name):
        raise StoreError(f"refusing table name {name!r}: expected predictions_<snapshot id>")
    return name


def _render(name: str, dialect: Dialect, table: str | None = None) -> list[str]:
    """Statements of `sql/<name>.sql` with identifier placeholders quoted for the dialect."""
    quote = dialect.identifier_preparer.quote_identifier
    idents = {} if table is None else {
        "table": quote(_checked_table(table)), "table_key": quote(f"{table}_key"),
    }

    def fill(match: re.Match[str]) -> str:
        if match.group(1) not in idents:
            raise StoreError(f"sql/{name}.sql: no value for placeholder {match.group(0)}")
        return idents[match.group(1)]

    return [_PLACEHOLDER.sub(fill, stmt) for stmt in statements(name)]


def _one(name: str, dialect: Dialect, table: str | None = None) -> str:
    """The single statement of `sql/<name>.sql` (see :func:`_render`)."""
    (stmt,) = _render(name, dialect, table)
    return stmt


def _run(conn: Connection, name: str, params: dict[str, Any] | None = None) -> Any:
    """Execute a value-bound statement from `sql/<name>.sql` (no identifier placeholders)."""
    return conn.execute(sa.text(_one(name, conn.dialect)), params or {})


def ensure_schema(engine: Engine) -> None:
    """Create the control table if it is missing (idempotent)."""
    with engine.begin() as conn:
        for stmt in _render(f"store_schema_{_dialect(conn)}", conn.dialect):
            conn.exec_driver_sql(stmt)


def _dialect(conn: Connection) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def _utc_text(moment: datetime) -> str:
    """A UTC timestamp as bind text both backends store and parse the same way."""
    return moment.astimezone(UTC).isoformat(sep=" ")


def as_date(value: Any) -> date | None:
    """A date from a driver value (SQLite returns ISO text)."""
    if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
        return value
    return date.fromisoformat(str(value)[:10])


def as_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from a driver value (SQLite returns ISO text, naive = UTC)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ---------------------------------------------------------------- reading the control table


def _current_id(conn: Connection) -> int | None:
    """The snapshot id the view serves, or None when no snapshot was ever published."""
    if not sa.inspect(conn).has_table(CURRENT_VIEW):
        return None
    row = conn.execute(sa.text(_one("lookup_current", conn.dialect))).first()
    return None if row is None else int(row[0])


def _infos(conn: Connection) -> list[SnapshotInfo]:
    """All control rows, oldest first, with the served one flagged."""
    if not sa.inspect(conn).has_table(SNAPSHOTS_TABLE):
        return []
    served = _current_id(conn)
    return [
        SnapshotInfo(
            snapshot_id=int(r.snapshot_id), snapshot_date=as_date(r.snapshot_date),  # type: ignore[arg-type]
            table_name=r.table_name, model_name=r.model_name, model_version=r.model_version,
            data_version=r.data_version, row_count=r.row_count,
            created_at=as_utc(r.created_at),  # type: ignore[arg-type]
            published_at=as_utc(r.published_at), status=r.status, note=r.note,
            current=int(r.snapshot_id) == served,
        )
        for r in _run(conn, "store_snapshots_list")
    ]


def snapshots(engine_or_url: Engine | str | sa.URL) -> list[SnapshotInfo]:
    """Every recorded snapshot (any status), oldest first."""
    with _engine(engine_or_url) as engine, engine.connect() as conn:
        return _infos(conn)


def current(engine_or_url: Engine | str | sa.URL) -> SnapshotInfo | None:
    """The snapshot `predictions_current` serves, or None when none was published."""
    with _engine(engine_or_url) as engine, engine.connect() as conn:
        return next((info for info in _infos(conn) if info.current), None)


def _info(conn: Connection, snapshot_id: int) -> SnapshotInfo | None:
    return next((i for i in _infos(conn) if i.snapshot_id == snapshot_id), None)


# ---------------------------------------------------------------- publish


def publish(
    engine_or_url: Engine | str | sa.URL,
    batches: Iterable[pa.RecordBatch],
    meta: SnapshotMeta,
    keep: int,
) -> SnapshotInfo:
    """Load `batches` into a new snapshot table, serve it atomically, keep the newest `keep`."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    with _engine(engine_or_url) as engine:
        ensure_schema(engine)
        snapshot_id = _begin_snapshot(engine, meta)
        table = table_name(snapshot_id)
        try:
            rows = _load(engine, table, snapshot_id, batches, meta)
            _activate(engine, table, snapshot_id, rows)
        except BaseException as exc:
            _abandon(engine, snapshot_id, table, exc)
            raise
        log.info("published snapshot %s (%s rows, model %s v%s) as %s", snapshot_id, rows,
                 meta.model_name, meta.model_version, table)
        try:
            retire(engine, keep)
        except sa.exc.SQLAlchemyError:  # the publish itself succeeded; retry next time
            log.warning("retention after snapshot %s failed", snapshot_id, exc_info=True)
        with engine.connect() as conn:
            info = _info(conn, snapshot_id)
        assert info is not None
        return info


def _begin_snapshot(engine: Engine, meta: SnapshotMeta) -> int:
    """Record the attempt as `loading` and name its table; returns the new snapshot id."""
    with engine.begin() as conn:
        snapshot_id = int(_run(conn, "store_snapshot_insert", {
            "snapshot_date": meta.snapshot_date.isoformat(), "model_name": meta.model_name,
            "model_version": meta.model_version, "data_version": meta.data_version,
            "created_at": _utc_text(datetime.now(UTC)), "note": meta.note,
        }).scalar_one())
        _run(conn, "store_snapshot_name",
             {"snapshot_id": snapshot_id, "table_name": table_name(snapshot_id)})
    return snapshot_id


def _load(
    engine: Engine, table: str, snapshot_id: int, batches: Iterable[pa.RecordBatch],
    meta: SnapshotMeta,
) -> int:
    """Create, fill and key the snapshot table in one transaction; returns the row count."""
    with engine.begin() as conn:
        conn.exec_driver_sql(_one("store_table_create", conn.dialect, table))
        rows = (_prepared(batch, meta) for batch in batches)
        if _dialect(conn) == "postgresql":
            count = _copy_rows(conn, table, rows, meta, snapshot_id)
        else:
            count = _insert_rows(conn, table, rows, meta, snapshot_id)
        if count == 0:
            raise EmptyPredictionsError(
                f"refusing to publish an empty prediction set for {meta.snapshot_date} "
                f"(model {meta.model_name} v{meta.model_version}): it would blank out every lookup"
            )
        _add_key(conn, table)
    return count


def _prepared(batch: pa.RecordBatch, meta: SnapshotMeta) -> pa.RecordBatch:
    """Check one input batch against the contract and the meta; keep the per-row columns."""
    missing = [c for c in ("entity_id", "score", "scored_at") if c not in batch.schema.names]
    if missing:
        raise PredictionsInputError(f"predictions lack required columns {missing}")
    expected = {"snapshot_date": meta.snapshot_date, "model_name": meta.model_name,
                "model_version": meta.model_version, "data_version": meta.data_version}
    for column, value in expected.items():
        if column in batch.schema.names:
            found = pc.unique(batch.column(column)).to_pylist()
            if found and found != [value]:
                raise PredictionsInputError(
                    f"predictions column {column} holds {found[:3]!r}, "
                    f"but the snapshot being published says {value!r}"
                )
    for column in ("entity_id", "score", "scored_at"):
        if batch.column(column).null_count:
            raise PredictionsInputError(f"predictions column {column} has null values")
    if batch.num_rows and pc.any(pc.is_nan(batch.column("score").cast(pa.float64()))).as_py():
        raise PredictionsInputError("predictions column score has NaN values")
    return pa.RecordBatch.from_arrays(
        [batch.column(f.name).cast(f.type) for f in _ROW_SCHEMA], schema=_ROW_SCHEMA
    )


def _insert_rows(
    conn: Connection, table: str, batches: Iterable[pa.RecordBatch], meta: SnapshotMeta,
    snapshot_id: int,
) -> int:
    """SQLite: executemany per batch inside the caller's transaction."""
    sql = _one("store_table_insert", conn.dialect, table)
    consts = {"snapshot_date": meta.snapshot_date.isoformat(), "model_name": meta.model_name,
              "model_version": meta.model_version, "data_version": meta.data_version,
              "snapshot_id": snapshot_id}
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        # UTC wall time as 'YYYY-MM-DD HH:MM:SS.ffffff' (the format SQLAlchemy uses on SQLite)
        stamps = batch.column("scored_at").cast(pa.timestamp("us")).cast(pa.string())
        conn.exec_driver_sql(sql, [
            {"entity_id": e, "score": s, "scored_at": t, **consts}
            for e, s, t in zip(batch.column("entity_id").to_pylist(),
                               batch.column("score").to_pylist(), stamps.to_pylist(),
                               strict=True)
        ])
        count += batch.num_rows
    return count


def _copy_batch(batch: pa.RecordBatch, meta: SnapshotMeta, snapshot_id: int) -> pa.RecordBatch:
    """A prepared batch widened to the table's columns, in store_table_copy.sql's order."""
    n = batch.num_rows
    return pa.RecordBatch.from_arrays([
        batch.column("entity_id"), batch.column("score"),
        pa.repeat(pa.scalar(meta.snapshot_date, pa.date32()), n),
        pa.repeat(pa.scalar(meta.model_name, pa.string()), n),
        pa.repeat(pa.scalar(meta.model_version, pa.string()), n),
        pa.repeat(pa.scalar(meta.data_version, pa.string()), n),
        batch.column("scored_at"), pa.repeat(pa.scalar(snapshot_id, pa.int64()), n),
    ], names=["entity_id", "score", "snapshot_date", "model_name", "model_version",
              "data_version", "scored_at", "snapshot_id"])


def _copy_rows(
    conn: Connection, table: str, batches: Iterable[pa.RecordBatch], meta: SnapshotMeta,
    snapshot_id: int,
) -> int:
    """PostgreSQL: stream each batch as CSV through psycopg COPY on the transaction's connection."""
    raw = conn.connection.driver_connection
    assert raw is not None
    options = pacsv.WriteOptions(include_header=False)
    count = 0
    with raw.cursor() as cursor, cursor.copy(_one("store_table_copy", conn.dialect, table)) as cp:
        for batch in batches:
            buffer = io.BytesIO()
            pacsv.write_csv(_copy_batch(batch, meta, snapshot_id), buffer, options)
            cp.write(buffer.getbuffer())
            count += batch.num_rows
    return count


def _add_key(conn: Connection, table: str) -> None:
    """Key the table on entity_id; on duplicates, name one (savepoint keeps the txn usable)."""
    try:
        with conn.begin_nested():
            for stmt in _render(f"store_table_key_{_dialect(conn)}", conn.dialect, table):
                conn.exec_driver_sql(stmt)
    except sa.exc.IntegrityError:
        dup = conn.exec_driver_sql(_one("store_table_duplicate", conn.dialect, table)).first()
        if dup is None:
            raise
        raise DuplicateEntityError(
            f"duplicate entity_id {dup[0]!r} ({dup[1]} rows) in the predictions: "
            "each entity must have exactly one prediction per snapshot"
        ) from None


def _point_view(conn: Connection, table: str) -> None:
    """Repoint `predictions_current` at `table` inside the caller's transaction."""
    for stmt in _render(f"store_view_{_dialect(conn)}", conn.dialect, table):
        conn.exec_driver_sql(stmt)


def _activate(engine: Engine, table: str, snapshot_id: int, rows: int) -> None:
    """One short transaction: repoint the view and mark the snapshot published."""
    with engine.begin() as conn:
        if _dialect(conn) == "postgresql":
            _run(conn, "store_lock_timeout_postgresql")
        _point_view(conn, table)
        updated = _run(conn, "store_snapshot_published", {
            "snapshot_id": snapshot_id, "row_count": rows,
            "published_at": _utc_text(datetime.now(UTC)),
        }).rowcount
        if updated != 1:
            raise StoreError(f"snapshot {snapshot_id} is no longer loading; not published")


def _abandon(engine: Engine, snapshot_id: int, table: str, exc: BaseException) -> None:
    """After a failed attempt: drop its table and mark it failed (best effort, logged)."""
    note = f"{type(exc).__name__}: {exc}"[:1000]
    log.error("publish of snapshot %s failed: %s", snapshot_id, note)
    try:
        with engine.begin() as conn:
            if _current_id(conn) == snapshot_id:  # the swap did commit: keep serving it
                log.error("snapshot %s is served despite the error; leaving it", snapshot_id)
                return
            conn.exec_driver_sql(_one("store_table_drop", conn.dialect, table))
            _run(conn, "store_snapshot_status",
                 {"snapshot_id": snapshot_id, "status": "failed", "note": note})
    except Exception:
        log.exception("could not clean up failed snapshot %s (table %s)", snapshot_id, table)


# ---------------------------------------------------------------- retention and rollback


def retire(engine: Engine, keep: int) -> list[int]:
    """Drop the tables of published snapshots beyond the newest `keep` (never the served one)."""
    with engine.connect() as conn:
        served = _current_id(conn)
        retained = _run(conn, "store_snapshots_retained").all()
    retired: list[int] = []
    for snapshot_id, name in retained[keep:]:
        if snapshot_id == served:
            continue
        try:
            with engine.begin() as conn:
                if _current_id(conn) == snapshot_id:  # a rollback got there first
                    continue
                conn.exec_driver_sql(_one("store_table_drop", conn.dialect, name))
                _run(conn, "store_snapshot_status", {
                    "snapshot_id": snapshot_id, "status": "retired",
                    "note": f"retired: beyond the newest {keep} published snapshots",
                })
        except sa.exc.SQLAlchemyError:
            log.warning("could not retire snapshot %s; will retry next publish", snapshot_id,
                        exc_info=True)
            continue
        retired.append(int(snapshot_id))
    if retired:
        log.info("retired snapshots %s (keeping %s)", retired, keep)
    return retired


def rollback(engine_or_url: Engine | str | sa.URL, snapshot_id: int) -> SnapshotInfo:
    """Serve a retained (published) snapshot again, at once."""
    with _engine(engine_or_url) as engine:
        with engine.begin() as conn:
            target = _info(conn, snapshot_id)
            if target is None or target.status != "published" or target.table_name is None:
                servable = [i.snapshot_id for i in _infos(conn) if i.status == "published"]
                state = "does not exist" if target is None else f"is {target.status}"
                raise SnapshotNotFoundError(
                    f"cannot roll back to snapshot {snapshot_id}: it {state}; "
                    f"retained snapshots: {servable}"
                )
            _point_view(conn, target.table_name)
        log.warning("rolled back predictions_current to snapshot %s", snapshot_id)
        with engine.connect() as conn:
            info = _info(conn, snapshot_id)
        assert info is not None
        return info
