"""Lookup clients: scores for entity ids, read from the `predictions_current` view only.

    with LookupClient(cfg.predictions_url) as client:
        hit = client.get_one("u1")            # a Lookup; fallback=True = no prediction
        hits = client.get(["u1", "u2"])       # one Lookup per id, in request order

Every call is ONE SQL statement, so all of its answers come from one snapshot even while a
publish or rollback swaps the view. On PostgreSQL the clients talk psycopg 3 directly (a
connection pool, autocommit, server-side prepared statements): one round trip per lookup.
An entity with no prediction gets `fallback=True` and the fallback score: the one given to
the client, else the served snapshot's: the training mean of the label of the model that
scored it (binary: the label rate; regression: the mean label, in the label's units).
:class:`AsyncLookupClient` is the same for asyncio (the HTTP API). Parts: `answers`,
`postgres` (the libpq fast path), `client`, `async_client`."""

from precast.serving.lookup.answers import Lookup, ServedSnapshot
from precast.serving.lookup.async_client import AsyncLookupClient
from precast.serving.lookup.client import LookupClient
from precast.serving.lookup.postgres import SessionLimits, libpq_conninfo, login_problem
from precast.store import NoSnapshotError

__all__ = [
    "Lookup",
    "ServedSnapshot",
    "SessionLimits",
    "libpq_conninfo",
    "login_problem",
    "LookupClient",
    "AsyncLookupClient",
    "NoSnapshotError",
]
