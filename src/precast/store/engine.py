"""Engines for the store (SQLite with WAL and real transactions, or PostgreSQL through psycopg)
and its control tables, created once per store in a process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from precast.resources import statements
from precast.store.sql import _CREATE_TABLE, _dialect, _one, _render, _run
from precast.store.types import StoreError

if TYPE_CHECKING:
    pass

SQLITE_BUSY_TIMEOUT_S = 30.0  # how long a SQLite statement waits for another's lock


def make_engine(url: str | sa.URL, busy_timeout_s: float | None = None) -> Engine:
    """An engine for the store: SQLite (WAL, foreign keys, real transactions; a statement
    waits `busy_timeout_s`, default SQLITE_BUSY_TIMEOUT_S, for a lock) or PostgreSQL."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        busy = SQLITE_BUSY_TIMEOUT_S if busy_timeout_s is None else busy_timeout_s
        engine = sa.create_engine(parsed, connect_args={"timeout": busy})
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
    with connected(engine_or_url, schema=False) as engine:
        yield engine


def control_tables() -> list[str]:
    """The control tables that sql/store_schema.sql creates, in its order."""
    return [m.group(1) for stmt in statements("store_schema")
            if (m := _CREATE_TABLE.search(stmt))]


def ensure_schema(engine: Engine, writer_role: str = "") -> None:
    """Create the control tables, and on PostgreSQL the use case's schema (the first of the
    session's search_path), if they are missing (idempotent).

    `writer_role` (PostgreSQL): create them as that role, so a table new in this version of
    precast is owned by the writer like the others, whichever member of it logged in.
    """
    with engine.begin() as conn:
        if writer_role and _dialect(conn) == "postgresql":
            _run(conn, "store_set_role_postgresql", {"role": writer_role})
        if _dialect(conn) == "postgresql" and conn.exec_driver_sql(
                "SELECT current_schema()").scalar_one() is None:
            path = str(conn.exec_driver_sql("SHOW search_path").scalar_one())
            first = path.split(",")[0].strip().strip('"')
            conn.exec_driver_sql(_one("store_schema_create_postgresql", conn.dialect,
                                      schema=first))
        for stmt in _render("store_schema", conn.dialect):
            conn.exec_driver_sql(stmt)


# The stores whose control tables this process has ensured: (URL, writer role, the SQLite
# file's identity, so that a file deleted and made again is ensured again).
_Key = tuple[str, str, tuple[int, int] | None]
_ENSURED: set[_Key] = set()


def _ensured_key(engine: Engine, writer_role: str) -> _Key | None:
    """The key of `engine`'s store in _ENSURED, None for an in-memory SQLite database
    (each connection has its own)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return (url.render_as_string(hide_password=False), writer_role, None)
    if not url.database or url.database == ":memory:":
        return None
    try:
        stat = Path(url.database).expanduser().stat()
    except FileNotFoundError:
        return None
    return (url.render_as_string(hide_password=False), writer_role, (stat.st_dev, stat.st_ino))


def ensure_schema_once(engine: Engine, writer_role: str = "") -> None:
    """ensure_schema, run once per store and writer role in this process."""
    if _ensured_key(engine, writer_role) in _ENSURED:
        return
    ensure_schema(engine, writer_role)
    key = _ensured_key(engine, writer_role)  # after: a new SQLite file exists now
    if key is not None:
        _ENSURED.add(key)


@contextmanager
def connected(url: str | sa.URL, writer_role: str = "", *, schema: bool = True
              ) -> Iterator[Engine]:
    """An engine for the store at `url`, disposed of on leaving; with `schema`, its control
    tables are ensured first (once per store in this process: ensure_schema_once). Readers
    that must work as the reader role, or on a store that has no tables yet, pass
    `schema=False`."""
    engine = make_engine(url)
    try:
        if schema:
            ensure_schema_once(engine, writer_role)
        yield engine
    finally:
        engine.dispose()
