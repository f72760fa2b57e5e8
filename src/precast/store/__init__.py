"""The prediction store: snapshot tables behind the `predictions_current` view, in SQLite or
PostgreSQL (`postgresql+psycopg`).

The package, from the bottom up: `types` (metadata, policy, errors), `sql` (statements and
safe table names), `engine` (engines, the control tables), `reading` (the control table),
`swap` (repointing the view), `publish` (one transaction per snapshot), `retention` (retire,
activate), `roles` (PostgreSQL's reader and writer), `pgcopy` (binary COPY from Arrow). This
module re-exports what the rest of precast uses (settings such as the SQLite busy timeout
stay in their module: `precast.store.engine.SQLITE_BUSY_TIMEOUT_S`)."""

from precast.store.engine import (
    connected,
    control_tables,
    ensure_schema,
    ensure_schema_once,
    make_engine,
)
from precast.store.publish import publish
from precast.store.reading import current, snapshots
from precast.store.retention import activate, retire
from precast.store.roles import setup
from precast.store.sql import as_date, as_utc, table_name
from precast.store.types import (
    CURRENT_VIEW,
    SNAPSHOTS_TABLE,
    DuplicateEntityError,
    EmptyPredictionsError,
    NoSnapshotError,
    OlderSnapshotError,
    PredictionsInputError,
    SnapshotInfo,
    SnapshotMeta,
    SnapshotNotFoundError,
    StoreError,
    StoreUnavailableError,
    SwapBlockedError,
    WritePolicy,
)

__all__ = [
    "CURRENT_VIEW",
    "DuplicateEntityError",
    "EmptyPredictionsError",
    "NoSnapshotError",
    "OlderSnapshotError",
    "PredictionsInputError",
    "SNAPSHOTS_TABLE",
    "SnapshotInfo",
    "SnapshotMeta",
    "SnapshotNotFoundError",
    "StoreError",
    "StoreUnavailableError",
    "SwapBlockedError",
    "WritePolicy",
    "as_date",
    "as_utc",
    "table_name",
    "connected",
    "control_tables",
    "ensure_schema",
    "ensure_schema_once",
    "make_engine",
    "current",
    "snapshots",
    "activate",
    "retire",
    "publish",
    "setup",
]
