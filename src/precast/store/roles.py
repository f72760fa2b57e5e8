"""Database roles on PostgreSQL: a writer that publishes and a reader that can only look up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast.store.engine import _engine, control_tables, ensure_schema
from precast.store.sql import _one, _render, _run
from precast.store.types import CURRENT_VIEW, StoreError

if TYPE_CHECKING:
    pass

def setup(engine_or_url: Engine | str | sa.URL, *, reader: str, writer: str) -> list[str]:
    """PostgreSQL, as an administrator: control tables, reader/writer roles and their grants.

    Idempotent; also hands an existing view and retained snapshot tables to the writer.
    Returns what was done, one line each.
    """
    done: list[str] = []
    with _engine(engine_or_url) as engine:
        if engine.dialect.name != "postgresql":
            raise StoreError("database roles exist on PostgreSQL only; a SQLite store is "
                             "protected by its file's permissions")
        ensure_schema(engine)
        with engine.begin() as conn:
            for role in (writer, reader):
                if _run(conn, "store_role_exists_postgresql", {"role": role}).first() is None:
                    conn.exec_driver_sql(_one("store_role_create_postgresql", conn.dialect,
                                              role=role))
                    done.append(f"created role {role}")
            schema = str(conn.exec_driver_sql("SELECT current_schema()").scalar_one())
            for stmt in _render("store_grants_postgresql", conn.dialect, schema=schema,
                                writer=writer, reader=reader):
                conn.exec_driver_sql(stmt)
            for control in control_tables():
                for stmt in _render("store_control_grants_postgresql", conn.dialect,
                                    control=control, writer=writer, reader=reader):
                    conn.exec_driver_sql(stmt)
            done.append(f"granted {writer} every write of the pipeline and {reader} reading "
                        f"in schema {schema}")
            if sa.inspect(conn).has_table(CURRENT_VIEW):
                for stmt in _render("store_grants_view_postgresql", conn.dialect,
                                    writer=writer, reader=reader):
                    conn.exec_driver_sql(stmt)
            for _, table in _run(conn, "store_snapshots_retained").all():
                conn.exec_driver_sql(_one("store_table_owner_postgresql", conn.dialect, table,
                                          writer=writer))
    return done
