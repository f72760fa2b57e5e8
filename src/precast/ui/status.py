"""What the precast view shows about one use case, read as the store's reader: the champion
and its history, the snapshots with their lineage, alerts, metric trends, the gate and
monitoring reports and the latest validation results. Nothing here writes: SQLite files are
opened read-only, PostgreSQL sessions are read-only and log in as the reader (serve.database_url
or the use case's `reader` Airflow connection), never with the writer's credentials."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from precast import store
from precast.config import Config, redact_url
from precast.errors import NotRetryable
from precast.gate.champions import ChampionPeriod, period
from precast.pipeline import record_path, records_root
from precast.resources import statement

ALERTS_SHOWN = 100  # newest alerts on a use case's page (the count says how many in all)
REPORTS_SHOWN = 20  # newest gate and monitoring reports listed
RECORD_DAYS_SCANNED = 60  # run-record days searched for each dataset's latest validation
VALIDATE_STEPS = {"validate_events": "events", "validate_features": "features",
                  "validate_inference": "inference features",
                  "validate_predictions": "predictions"}


class ReaderMissingError(NotRetryable, RuntimeError):
    """A PostgreSQL store has no reader login configured: the view does not read with the
    writer's credentials."""


@dataclass(frozen=True)
class StoreView:
    """What a use case's store holds, newest first where it is a list."""

    history: list[ChampionPeriod] = field(default_factory=list)
    snapshots: list[store.SnapshotInfo] = field(default_factory=list)
    open_alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_total: int = 0
    alerts_open: int = 0
    recent_alerts: list[dict[str, Any]] = field(default_factory=list)
    series: dict[tuple[str, str], list[tuple[date, str, float | None]]] = field(
        default_factory=dict)

    @property
    def champion(self) -> ChampionPeriod | None:
        """The open champion period, None before the first."""
        first = self.history[0] if self.history else None
        return first if first is not None and first.valid_to is None else None

    @property
    def served(self) -> store.SnapshotInfo | None:
        return next((s for s in self.snapshots if s.current), None)


@dataclass(frozen=True)
class Report:
    """A gate or monitoring report on disk."""

    kind: str  # "gate" or "monitor"
    run_date: str
    name: str
    modified: datetime


def reader_url(cfg: Config) -> str:
    """The URL the view reads the use case's store with (its search_path set)."""
    url = cfg.serve_url
    if sa.make_url(url).get_backend_name() != "sqlite" and not cfg.serve.database_url:
        raise ReaderMissingError(
            f"use case {cfg.name}: its store is {redact_url(url)}, and no reader login is "
            "configured; set serve.database_url or the Airflow connection of "
            "airflow.connections.reader to a login in the reader role (`precast store setup`)")
    return url


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def reader_engine(url: str) -> Engine:
    """A pooled, read-only engine for `url` (one per URL in this process)."""
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            engine = _ENGINES[url] = _read_only(url)
        return engine


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite store, None for any other."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return Path(parsed.database or "").expanduser().resolve()


def _read_only(url: str) -> Engine:
    path = _sqlite_path(url)
    if path is not None:

        def connect() -> sqlite3.Connection:  # mode=ro: never creates the file
            return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True,
                                   check_same_thread=False, timeout=5)

        return sa.create_engine("sqlite://", creator=connect, poolclass=sa.pool.QueuePool)
    engine = store.make_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _read_only_session(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        dbapi_conn.commit()

    return engine


def _dicts(conn: sa.Connection, name: str, **params: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.text(statement(name)), params).mappings()]


def read_store(cfg: Config, url: str, *, detail: bool = False) -> StoreView:
    """The use case's store as the view shows it: the overview's part, or (`detail`) all.
    A store without tables yet, or a SQLite file not made yet, reads as empty."""
    path = _sqlite_path(url)
    if path is not None and not path.is_file():  # reading never creates it
        return StoreView()
    with reader_engine(url).connect() as conn:
        return _read(conn, cfg, detail)


def _read(conn: sa.Connection, cfg: Config, detail: bool) -> StoreView:
    tables = set(sa.inspect(conn).get_table_names())
    model = {"model_name": cfg.model.name}
    history = ([period(r) for r in conn.execute(sa.text(statement(
        "champion_history_list")), model)] if "champion_history" in tables else [])
    snapshots = list(reversed(store.snapshots(conn)))
    if "alerts" not in tables or "model_metrics" not in tables:
        return StoreView(history, snapshots)
    counts = _dicts(conn, "ui_alerts_counts", **model)[0]
    view = StoreView(history, snapshots,
                     _dicts(conn, "ui_alerts_open", **model, limit=ALERTS_SHOWN),
                     int(counts["total"] or 0), int(counts["open"] or 0))
    if not detail:
        return view
    series: dict[tuple[str, str], list[tuple[date, str, float | None]]] = defaultdict(list)
    for row in _dicts(conn, "ui_metric_series", **model):
        series[(row["kind"], row["metric"])].append(
            (store.as_date(row["snapshot_date"]) or date.min, str(row["model_version"]),
             None if row["value"] is None else float(row["value"])))
    return StoreView(history, snapshots, view.open_alerts, view.alerts_total,
                     view.alerts_open, _dicts(conn, "ui_alerts_recent", limit=ALERTS_SHOWN),
                     dict(series))


def reports(cfg: Config) -> list[Report]:
    """The newest gate and monitoring reports under the use case's reports folder."""
    found = []
    for kind in ("gate", "monitor"):
        for path in (cfg.space / "reports" / kind).glob("*/*.html"):
            found.append(Report(kind, path.parent.name, path.name,
                                datetime.fromtimestamp(path.stat().st_mtime, UTC)))
    return sorted(found, key=lambda r: (r.run_date, r.modified), reverse=True)[:REPORTS_SHOWN]


def report_file(cfg: Config, kind: str, run_date: str, name: str) -> Path | None:
    """A report's file, or None when the name does not name one (no path escapes)."""
    folder = (cfg.space / "reports").resolve()
    if kind not in ("gate", "monitor") or not name.endswith(".html"):
        return None
    path = (folder / kind / run_date / name).resolve()
    return path if path.is_file() and path.parent.parent.parent == folder else None


@dataclass(frozen=True)
class Validation:
    """The latest recorded validation of one dataset."""

    dataset: str
    run_date: str
    status: str  # success / failed
    statistics: dict[str, Any]
    failed: list[str]
    error: str | None


def validations(cfg: Config) -> list[Validation]:
    """Each dataset's latest validation, from the run records (what failed, on which
    values: GX's own summaries, kept in the record)."""
    runs = records_root(cfg)
    days = sorted((p.name for p in runs.iterdir() if p.is_dir()), reverse=True) \
        if runs.is_dir() else []
    found: dict[str, Validation] = {}
    for day in days[:RECORD_DAYS_SCANNED]:
        for step, dataset in VALIDATE_STEPS.items():
            path = record_path(cfg, date.fromisoformat(day), step)
            if dataset in found or not path.is_file():
                continue
            rec = json.loads(path.read_text(encoding="utf-8"))
            result = rec.get("result") or {}
            error = rec.get("error")
            failed = list(result.get("failed") or [])
            if error and not failed:
                failed = [line.strip()[2:] for line in str(error).splitlines()
                          if line.strip().startswith("- ")]
            found[dataset] = Validation(dataset, day, str(rec.get("status")),
                                        dict(result.get("statistics") or {}), failed, error)
        if len(found) == len(VALIDATE_STEPS):
            break
    return [found[d] for d in VALIDATE_STEPS.values() if d in found]
