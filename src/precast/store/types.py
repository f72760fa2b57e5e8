"""What the prediction store holds and refuses: snapshot metadata, the write policy, what a
snapshot looks like when read back, and the store's errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

from precast.errors import NotRetryable

if TYPE_CHECKING:
    from precast.config import Config

SNAPSHOTS_TABLE = "prediction_snapshots"
CURRENT_VIEW = "predictions_current"


class StoreError(Exception):
    """The prediction store refused or failed an operation; the message says why."""


class OlderSnapshotError(NotRetryable, StoreError, ValueError):
    """A publish would serve predictions older than the ones served (rollback goes back)."""


class PredictionsInputError(NotRetryable, StoreError, ValueError):
    """The predictions handed to publish break the contract (columns, nulls, metadata)."""


class EmptyPredictionsError(PredictionsInputError):
    """Publishing zero rows is refused: it would blank out every lookup."""


class DuplicateEntityError(PredictionsInputError):
    """An entity id occurs more than once in the predictions."""


class NoSnapshotError(StoreError, LookupError):
    """No prediction snapshot has been published to this store yet."""


class SnapshotNotFoundError(StoreError, LookupError):
    """The requested snapshot does not exist or is not retained (cannot be served)."""


class StoreUnavailableError(StoreError):
    """The store could not answer (locked, unreachable): never read as "nothing recorded",
    since that would let a gate judge without the champion's history or past a pin.
    Retryable."""


class SwapBlockedError(StoreError):
    """Readers held predictions_current for longer than every swap attempt was allowed to wait."""


@dataclass(frozen=True)
class SnapshotMeta:
    """What a snapshot is: its date, the model and data versions behind it, and its lineage."""

    snapshot_date: date
    model_name: str
    model_version: str
    data_version: str
    mlflow_run_id: str | None = None
    training_data_version: str | None = None
    code_version: str | None = None
    fallback_score: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class WritePolicy:
    """How writes act: swap waits for readers, key-building memory, the PostgreSQL role."""

    lock_timeout_ms: int = 1000
    attempts: int = 10
    pause_s: float = 0.1  # doubled after each blocked attempt, at most 2 s
    index_memory: str = "256MB"
    writer_role: str = ""  # PostgreSQL: SET ROLE to it in every write transaction

    @classmethod
    def of(cls, cfg: Config) -> WritePolicy:
        """How a use case's store writes (swap waits, writer role), from `stores.*`."""
        return cls(lock_timeout_ms=cfg.stores.swap_lock_timeout_ms,
                   attempts=cfg.stores.swap_attempts, writer_role=cfg.stores.writer_role)


@dataclass(frozen=True)
class SnapshotInfo:
    """One row of `prediction_snapshots`; `current` is True for the one the view serves."""

    snapshot_id: int
    snapshot_date: date
    table_name: str | None
    model_name: str
    model_version: str
    data_version: str
    mlflow_run_id: str | None
    training_data_version: str | None
    code_version: str | None
    fallback_score: float | None
    row_count: int | None
    created_at: datetime
    published_at: datetime | None
    status: str
    note: str | None
    activated_at: datetime | None
    activated_by: str | None
    activation_reason: str | None
    current: bool = False
