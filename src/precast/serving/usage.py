"""Metering of the lookup API: per-key read counts per day, kept in memory and merged into
`<space>/serve/usage/<YYYY-MM-DD>.json` now and then (and at shutdown).

    meter = Meter(cfg.space / "serve" / "usage")
    meter.count("alice", "get", "churn", "3", 12)   # on the event loop: a dict update
    meter.flush(meter.take())            # in a thread: merge the counts into the day files
    read_usage(folder, day)              # the rows of one day, for `precast usage`

The API reads the store as the reader role and never writes to it, so the audit lives in
files: each flush takes the counts gathered since the last one, and under an exclusive file
lock (workers of one service share the files) adds them to the day's file, written to a
temporary file (mode 0600) and renamed over it, so a reader sees the old file or the new
one. A row is (key, endpoint, model name, model version, snapshot id) with its `requests`
and `ids` (a batchGet of 10 ids is 1 request, 10 ids), UTC days.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

__all__ = ["Meter", "read_usage"]

log = logging.getLogger(__name__)
_DAY_S = 86_400
_EPOCH = date(1970, 1, 1)
_FIELDS = ("key", "endpoint", "model_name", "model_version", "snapshot_id")
Cell = tuple[int, str, str, str | None, str | None, int | None]  # day number first


class Meter:
    """Per-key counts in memory; :meth:`flush` merges them into the day files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._counts: dict[Cell, list[int]] = {}

    def count(self, key: str, endpoint: str, model_name: str | None,
              model_version: str | None, snapshot_id: int | None, ids: int = 1) -> None:
        """One answered request by `key` (cheap: called on every lookup)."""
        cell = (int(time.time()) // _DAY_S, key, endpoint, model_name, model_version,
                snapshot_id)
        counted = self._counts.get(cell)
        if counted is None:
            self._counts[cell] = [1, ids]
        else:
            counted[0] += 1
            counted[1] += ids

    def take(self) -> dict[Cell, list[int]]:
        """The counts since the last take, leaving none (on the event loop: no await)."""
        counts, self._counts = self._counts, {}
        return counts

    def flush(self, counts: dict[Cell, list[int]]) -> None:
        """Merge `counts` (from :meth:`take`) into the day files; OSError when it cannot."""
        if not counts:
            return
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with (self.folder / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for day, cells in _by_day(counts).items():
                _merge(self.folder / f"{day.isoformat()}.json", day, cells)

    def restore(self, counts: dict[Cell, list[int]]) -> None:
        """Put back counts that could not be flushed (on the event loop, like count)."""
        for cell, (requests, ids) in counts.items():
            counted = self._counts.setdefault(cell, [0, 0])
            counted[0] += requests
            counted[1] += ids


def _by_day(counts: dict[Cell, list[int]]) -> dict[date, dict[tuple[Any, ...], list[int]]]:
    days: dict[date, dict[tuple[Any, ...], list[int]]] = {}
    for (day, *rest), counted in counts.items():
        days.setdefault(_EPOCH + timedelta(days=day), {})[tuple(rest)] = counted
    return days


def _merge(path: Path, day: date, cells: dict[tuple[Any, ...], list[int]]) -> None:
    """Add `cells` to the rows of the day file at `path` (atomically replaced)."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for row in read_rows(path):
        totals[tuple(row[name] for name in _FIELDS)] = [row["requests"], row["ids"]]
    for cell, (requests, ids) in cells.items():
        counted = totals.setdefault(cell, [0, 0])
        counted[0] += requests
        counted[1] += ids
    rows = [{**dict(zip(_FIELDS, cell, strict=True)), "requests": requests, "ids": ids}
            for cell, (requests, ids) in sorted(totals.items(), key=lambda item: str(item[0]))]
    document = {"date": day.isoformat(), "updated_at": datetime.now(UTC).isoformat(),
                "rows": rows}
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(document, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one day file ([] when there is none)."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = json.loads(path.read_text())["rows"]
    return rows


def read_usage(folder: Path, day: date) -> list[dict[str, Any]]:
    """The usage rows of `day` (UTC), as `precast usage` shows them."""
    return read_rows(folder / f"{day.isoformat()}.json")
