"""Airflow connections and the lake variable as config overrides: a use case's
`airflow.connections` and `airflow.lake_variable` override its config fields where they
exist (a PostgreSQL, HTTP or Spark connection becomes the URL the field takes)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import quote

from airflow.sdk import Connection, Variable
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowNotFoundException,
)

from precast.orchestration.use_cases import UseCase

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


LAKE_FIELD = "stores.lake"  # what the airflow.lake_variable Variable overrides
SPARK_MASTER = "engines.spark.master"


def connection_value(field: str, conn: Connection) -> str:
    """The value for config field `field` that Airflow connection `conn` describes.

    Extra `{"url": ...}` wins; else a Spark master for `engines.spark.master`, else a URL
    by conn_type (postgres, sqlite, http, https). Raises ValueError for anything else.
    """
    url = conn.extra_dejson.get("url")
    if url:
        return str(url)
    if field == SPARK_MASTER:
        return spark_master(conn)
    kind = (conn.conn_type or "").lower()
    if kind in ("postgres", "postgresql"):
        return postgres_url(conn)
    if kind == "sqlite":
        return f"sqlite:///{conn.host or ''}"
    if kind in ("http", "https"):
        return http_url(conn)
    raise ValueError(f"conn_type {conn.conn_type!r} cannot give {field}; use postgres, sqlite, "
                     f"http or https, or set extra {{\"url\": \"...\"}}")


def spark_master(conn: Connection) -> str:
    """Airflow's Spark convention: host (`spark://h`, `yarn`, `local[*]`, `k8s://...`) + port."""
    host = (conn.host or "").strip()
    if not host:
        raise ValueError("a Spark connection needs a host (spark://host, yarn, local[*], ...)")
    if conn.port and "://" not in host:  # host "h", port 7077: a standalone master
        host = f"spark://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def postgres_url(conn: Connection) -> str:
    """A psycopg SQLAlchemy URL; login and password are escaped by SQLAlchemy."""
    from sqlalchemy.engine import URL

    return URL.create("postgresql+psycopg", username=conn.login or None,
                      password=conn.password or None, host=conn.host or None,
                      port=conn.port or None, database=conn.schema or None
                      ).render_as_string(hide_password=False)


def http_url(conn: Connection) -> str:
    """`scheme://[login[:password]@]host[:port][/schema]`; scheme from the conn_type.

    As in Airflow's HTTP provider, a schema of `http`/`https` is the scheme, and a host
    that already has a scheme is used as it is.
    """
    scheme, path = (conn.conn_type or "http").lower(), (conn.schema or "").strip("/")
    if path in ("http", "https"):
        scheme, path = path, ""
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        auth = quote(conn.login or "", safe="")
        if conn.password:
            auth += ":" + quote(conn.password, safe="")
        host = f"{scheme}://{auth + '@' if auth else ''}{host}"
        host += f":{conn.port}" if conn.port else ""
    return f"{host}/{path}" if path else host


def airflow_overrides(uc: UseCase) -> dict[str, str]:
    """Dotted config overrides from the use case's Airflow connections and variable that
    exist."""
    from precast.config import redact_url as redact

    out: dict[str, str] = {}
    for field, conn_id in uc.connections.items():
        try:
            conn = Connection.get(conn_id)
        except AirflowNotFoundException:
            continue
        try:
            out[field] = connection_value(field, conn)
        except ValueError as exc:
            raise AirflowFailException(f"Airflow connection {conn_id}: {exc}") from None
        log.info("config %s = %s (Airflow connection %s)", field, redact(out[field]), conn_id)
    value = Variable.get(uc.lake_variable, default=None) if uc.lake_variable else None
    if value:
        out[LAKE_FIELD] = str(value)
        log.info("config %s = %s (Airflow variable %s)", LAKE_FIELD, redact(out[LAKE_FIELD]),
                 uc.lake_variable)
    return out
