"""The PostgreSQL fast path: psycopg 3 directly, with autocommit and server-side prepared
statements (one round trip per lookup), session limits (statement and idle timeouts), the
`:name` binds of `sql/` rewritten as positional `%s`, and a login refusal in one line."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa

from precast.resources import statement as _statement

_BIND = re.compile(r"(?<![:\w]):(\w+)")
# Every lookup connection: one statement per round trip (autocommit), prepared on first use,
# read-only at the server too (a lookup can never write, whatever role it logs in as), and
# named in pg_stat_activity.
_SESSION = {"autocommit": True, "prepare_threshold": 0, "application_name": "precast-lookup",
            "options": "-c default_transaction_read_only=on"}


@dataclass(frozen=True)
class SessionLimits:
    """Bounds on every session of a client: PostgreSQL statements are cancelled by the
    server past `statement_timeout_ms`, a connection attempt gives up past
    `connect_timeout_s`, and TCP keepalives (from `keepalives_idle_s` of silence) find a dead
    peer; a SQLite statement waits `busy_timeout_ms` for a lock."""

    statement_timeout_ms: int = 2000
    connect_timeout_s: int = 3
    keepalives_idle_s: int = 30
    busy_timeout_ms: int = 1000

    @property
    def batch_timeout_s(self) -> float:
        """How long one statement may take at the client: the server's limit plus a second."""
        return self.statement_timeout_ms / 1000 + 1


def _session(url: sa.URL, limits: SessionLimits | None = None) -> dict[str, Any]:
    """_SESSION for `url`, keeping the URL's own libpq options (the use case's search_path),
    with the bounds of `limits` when given."""
    own = url.query.get("options") or ""
    own = own if isinstance(own, str) else own[-1]
    options = f"{own} {_SESSION['options']}".strip()
    session: dict[str, Any] = {**_SESSION, "options": options}
    if limits is not None:
        session["options"] = f"{options} -c statement_timeout={limits.statement_timeout_ms}"
        session.update(connect_timeout=limits.connect_timeout_s, keepalives=1,
                       keepalives_idle=limits.keepalives_idle_s, keepalives_interval=10,
                       keepalives_count=3)
    return session


# A server that answered and refused the login: a configuration error, not an outage.
_LOGIN_REFUSED = re.compile(
    r"authentication failed|(role|database) \"[^\"]*\" does not exist|no pg_hba\.conf entry|"
    r"permission denied|not permitted to log in")


def login_problem(url: str | sa.URL, limits: SessionLimits | None = None) -> str | None:
    """Why the store at `url` refuses to let us in (wrong password, no such role or
    database), or None: it lets us in, it is SQLite, or it cannot be reached now (an outage
    is answered with 503s until it ends)."""
    import psycopg

    parsed = sa.make_url(url)
    if not _is_postgres(parsed):
        return None
    try:
        psycopg.connect(libpq_conninfo(parsed), **_session(parsed, limits)).close()
    except psycopg.OperationalError as exc:
        if _LOGIN_REFUSED.search(str(exc)):  # keep the server's words, not libpq's preamble
            line = str(exc).strip().splitlines()[0]
            return line.rsplit("failed: ", 1)[-1].replace("FATAL:  ", "")
    return None


@cache
def _pg_sql(name: str) -> tuple[str, tuple[str, ...]]:
    """`sql/<name>.sql` with its `:name` binds as positional `%s`, and the names in order
    (positional parameters are the cheapest for psycopg to send)."""
    text = _statement(name).replace("%", "%%")
    return _BIND.sub("%s", text), tuple(_BIND.findall(text))


def _pg_params(names: tuple[str, ...], params: dict[str, Any]) -> list[Any]:
    return [params[name] for name in names]


class _StatementFailed(Exception):
    """The prepared fast path did not answer; the cursor path runs the call (and raises)."""


class _PreparedOne:
    """lookup_one.sql prepared once on a connection and run through libpq directly.

    The Python client's hot path: psycopg's cursor machinery (query conversion, prepare
    bookkeeping, its generator protocol) is about a third of a point lookup's CPU, which
    decides throughput when client processes share the database's cores. Rows are still
    typed by psycopg's own loaders; any failure leaves the call to the cursor path.
    """

    _count = itertools.count()

    def __init__(self, conn: Any) -> None:
        from psycopg import pq
        from psycopg.adapt import Transformer

        self._ok, self._tuples = pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK
        self.connection = conn
        self._pgconn = conn.pgconn
        self._load = Transformer(conn)
        self._name = f"precast_lookup_one_{next(self._count)}".encode()
        position = itertools.count(1)
        sql = _BIND.sub(lambda _: f"${next(position)}", _statement("lookup_one"))
        self.ready = self._pgconn.prepare(self._name, sql.encode(), None).status == self._ok

    def row(self, entity_id: str) -> tuple[Any, ...] | None:
        """The lookup_one row of `entity_id`, None when it has none; _StatementFailed else."""
        result = self._pgconn.exec_prepared(self._name, [entity_id.encode()], None, 1)
        if result.status != self._tuples:
            raise _StatementFailed(result.status)
        if not result.ntuples:
            return None
        self._load.set_pgresult(result)
        return self._load.load_row(0, tuple)


def _is_postgres(url: sa.URL) -> bool:
    return url.get_backend_name() in {"postgresql", "postgres"}


def libpq_conninfo(url: str | sa.URL) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL (password and query kept)."""
    from psycopg.conninfo import make_conninfo

    u = sa.make_url(url)
    query = {k: v if isinstance(v, str) else v[-1] for k, v in u.query.items()}
    parts = {"host": u.host, "port": u.port, "dbname": u.database, "user": u.username,
             "password": u.password, **query}
    return make_conninfo("", **{k: v for k, v in parts.items() if v is not None})
