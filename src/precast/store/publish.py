"""Publishing a snapshot in ONE transaction: record it, create `predictions_<id>`, bulk load it
(PostgreSQL: binary COPY streamed from Arrow batches, precast.store.pgcopy; SQLite:
executemany), add the primary key, ANALYZE, repoint `predictions_current`, mark it published.
Nothing is visible to other sessions before the commit, so readers see the old snapshot or
the new one, never a mix, and a publisher killed at any point leaves nothing behind. Only the
answer to the COMMIT can be lost after the server made it durable: the publisher then asks
the store whether its snapshot is published (and returns it if so) before it records a
failure."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from precast.store import pgcopy
from precast.store.engine import _engine, ensure_schema_once
from precast.store.reading import _info, _infos
from precast.store.retention import retire
from precast.store.sql import _dialect, _one, _render, _run, _utc_text, table_name
from precast.store.swap import _act_as_writer, _swap
from precast.store.types import (
    DuplicateEntityError,
    EmptyPredictionsError,
    OlderSnapshotError,
    PredictionsInputError,
    SnapshotInfo,
    SnapshotMeta,
    WritePolicy,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


_ROW_SCHEMA = pa.schema(
    [("entity_id", pa.string()), ("score", pa.float64()),
     ("scored_at", pa.timestamp("us", tz="UTC"))]
)


def publish(
    engine_or_url: Engine | str | sa.URL,
    batches: Iterable[pa.RecordBatch],
    meta: SnapshotMeta,
    keep: int,
    *,
    policy: WritePolicy = WritePolicy(),
    by: str = "publish",
    rows_if_served: int | None = None,
    allow_older: bool = False,
) -> SnapshotInfo:
    """Load `batches` into a new snapshot table and serve it, in one transaction; keep `keep`.

    Publishers of one namespace are serialised for the whole transaction; inside it, a
    snapshot that already serves `meta` with `rows_if_served` rows is returned as it is (a
    rerun or retry), and `meta` older than the served snapshot is refused unless
    `allow_older` (OlderSnapshotError: rollback is the way back).
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    with _engine(engine_or_url) as engine:
        ensure_schema_once(engine)
        swapped = False  # then only the COMMIT is left, whose answer a crash can lose
        try:
            with engine.connect() as conn, conn.begin():
                _act_as_writer(conn, policy)
                conn.execute(sa.text(_one(f"store_publish_lock_{_dialect(conn)}", conn.dialect)))
                served = next((i for i in _infos(conn) if i.current), None)
                if served is not None and rows_if_served is not None and _holds(
                        served, meta, rows_if_served):
                    return served
                if served is not None and served.snapshot_date is not None and (
                        meta.snapshot_date < served.snapshot_date) and not allow_older:
                    raise OlderSnapshotError(
                        f"refusing to publish {meta.snapshot_date}: snapshot "
                        f"{served.snapshot_id} of {served.snapshot_date} is served, and is newer "
                        "(roll back to serve older predictions)")
                snapshot_id = _insert_snapshot(conn, meta)
                table = table_name(snapshot_id)
                rows = _load(conn, table, batches, meta, policy)
                _swap(conn, table, policy, by=by, action="publish", published_rows=rows,
                      reason=f"published {rows} rows of {meta.model_name} "
                             f"v{meta.model_version} for {meta.snapshot_date}")
                swapped = True
        except BaseException as exc:
            committed = swapped and _committed_all_the_same(engine, snapshot_id, meta, exc)
            if committed is False:
                _record_failure(engine, meta, exc, policy)
            if not committed:  # None: unknown, and no "failed" row that could be wrong
                raise
        log.info("published snapshot %s (%s rows, model %s v%s) as %s", snapshot_id, rows,
                 meta.model_name, meta.model_version, table)
        retire(engine, keep, policy)
        with engine.connect() as conn:
            info = _info(conn, snapshot_id)
        assert info is not None
        return info


def _holds(info: SnapshotInfo, meta: SnapshotMeta, rows: int) -> bool:
    """True when a snapshot already holds these predictions (same date, model, data, rows)."""
    return (info.snapshot_date, info.model_name, info.model_version, info.data_version,
            info.row_count) == (meta.snapshot_date, meta.model_name, meta.model_version,
                                meta.data_version, rows)


def _meta_params(meta: SnapshotMeta) -> dict[str, Any]:
    """The control-row values of a snapshot's metadata, as binds."""
    return {
        "snapshot_date": meta.snapshot_date.isoformat(), "model_name": meta.model_name,
        "model_version": meta.model_version, "data_version": meta.data_version,
        "mlflow_run_id": meta.mlflow_run_id, "training_data_version": meta.training_data_version,
        "code_version": meta.code_version, "fallback_score": meta.fallback_score,
        "created_at": _utc_text(datetime.now(UTC)), "note": meta.note,
    }


def _insert_snapshot(conn: Connection, meta: SnapshotMeta) -> int:
    """Record the snapshot (status loading, invisible until commit); returns its new id."""
    return int(_run(conn, "store_snapshot_insert",
                    {**_meta_params(meta), "status": "loading"}).scalar_one())


def _load(
    conn: Connection, table: str, batches: Iterable[pa.RecordBatch], meta: SnapshotMeta,
    policy: WritePolicy,
) -> int:
    """Create, fill, key and ANALYZE the snapshot table; returns the row count."""
    conn.exec_driver_sql(_one("store_table_create", conn.dialect, table))
    rows = (_prepared(batch, meta) for batch in batches)
    if _dialect(conn) == "postgresql":
        count = _copy_rows(conn, table, rows)
        _run(conn, "store_maintenance_mem_postgresql", {"memory": policy.index_memory})
    else:
        count = _insert_rows(conn, table, rows)
    if count == 0:
        raise EmptyPredictionsError(
            f"refusing to publish an empty prediction set for {meta.snapshot_date} "
            f"(model {meta.model_name} v{meta.model_version}): it would blank out every lookup"
        )
    _add_key(conn, table)
    conn.exec_driver_sql(_one("store_table_analyze", conn.dialect, table))
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
    scores = batch.column("score").cast(pa.float64())
    if batch.num_rows and pc.any(pc.is_nan(scores)).as_py():
        raise PredictionsInputError("predictions column score has NaN values")
    if batch.num_rows and pc.any(pc.is_inf(scores)).as_py():  # every lookup of them would fail
        raise PredictionsInputError("predictions column score has infinite values")
    return pa.RecordBatch.from_arrays(
        [batch.column(f.name).cast(f.type) for f in _ROW_SCHEMA], schema=_ROW_SCHEMA
    )


def _insert_rows(conn: Connection, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """SQLite: executemany per batch inside the caller's transaction."""
    sql = _one("store_table_insert", conn.dialect, table)
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        # UTC wall time as 'YYYY-MM-DD HH:MM:SS.ffffff' (the format SQLAlchemy uses on SQLite)
        stamps = batch.column("scored_at").cast(pa.timestamp("us")).cast(pa.string())
        conn.exec_driver_sql(sql, [
            {"entity_id": e, "score": s, "scored_at": t}
            for e, s, t in zip(batch.column("entity_id").to_pylist(),
                               batch.column("score").to_pylist(), stamps.to_pylist(),
                               strict=True)
        ])
        count += batch.num_rows
    return count


def _copy_rows(conn: Connection, table: str, batches: Iterable[pa.RecordBatch]) -> int:
    """PostgreSQL: stream the batches as binary COPY; a writer thread overlaps I/O and encoding."""
    from psycopg.copy import QueuedLibpqWriter

    raw = conn.connection.driver_connection
    assert raw is not None
    count = 0
    with raw.cursor() as cursor:
        sql = _one("store_table_copy", conn.dialect, table)
        with cursor.copy(sql, writer=QueuedLibpqWriter(cursor)) as copy:
            copy.write(pgcopy.HEADER)
            for batch in batches:
                for chunk in pgcopy.encode(batch):
                    copy.write(chunk)
                count += batch.num_rows
            copy.write(pgcopy.TRAILER)
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


def _committed_all_the_same(
    engine: Engine, snapshot_id: int, meta: SnapshotMeta, exc: BaseException
) -> bool | None:
    """After the connection failed at COMMIT: did the server commit all the same (its answer
    was lost)? True: published; False: not; None: the store cannot be asked now."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    try:
        with engine.connect() as conn:
            info = _info(conn, snapshot_id)
    except sa.exc.SQLAlchemyError:
        log.error("publish of %s (model %s v%s): the connection failed at COMMIT and the store "
                  "cannot be asked whether snapshot %s was published (a retry finds out): %s",
                  meta.snapshot_date, meta.model_name, meta.model_version, snapshot_id, exc)
        return None
    if info is None or info.status != "published":
        return False
    log.warning("publish of %s: the answer to its COMMIT was lost (%s), but snapshot %s is "
                "published", meta.snapshot_date, type(exc).__name__, snapshot_id)
    return True


def _why(exc: BaseException) -> str:
    """`Type: message` of an error, and of the first error behind it when that one was
    replaced (a rollback on a lost connection fails too, and says less)."""
    first: BaseException = exc
    while (behind := first.__cause__ or (
            None if first.__suppress_context__ else first.__context__)) is not None:
        first = behind
    text = f"{type(exc).__name__}: {exc}"
    if str(first) not in text:
        text += f" (after {type(first).__name__}: {first})"
    return text


def _record_failure(
    engine: Engine, meta: SnapshotMeta, exc: BaseException, policy: WritePolicy
) -> None:
    """After a rolled-back publish: a `failed` control row saying why (best effort, logged)."""
    note = _why(exc)[:1000]
    log.error("publish of %s (model %s v%s) failed, nothing changed: %s", meta.snapshot_date,
              meta.model_name, meta.model_version, note)
    try:
        with engine.begin() as conn:
            _act_as_writer(conn, policy)
            _run(conn, "store_snapshot_insert",
                 {**_meta_params(meta), "status": "failed", "note": note})
    except Exception:
        log.exception("could not record the failed publish of %s", meta.snapshot_date)
