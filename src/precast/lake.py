"""Lake paths and dataset manifests.

The lake root is a local path or a URL (`s3://`, `gs://`, `hdfs://`); Spark reads
and writes the data, and manifests go through `pyarrow.fs` so any of them work.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from pyarrow import fs as pafs

MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class Lake:
    """Every path precast reads or writes, derived from one root; the raw logs may live
    elsewhere (`raw`: a folder or URL holding `dt=YYYY-MM-DD/` folders)."""

    root: str
    raw: str = ""

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def raw_events(self, day: date | None = None) -> str:
        base = self.raw.rstrip("/") if self.raw else self._join("raw", "events")
        return f"{base}/dt={day.isoformat()}" if day else base

    def events(self, day: date | None = None) -> str:
        return self._join("events", f"dt={day.isoformat()}") if day else self._join("events")

    def quarantine(self, day: date | None = None) -> str:
        base = self._join("quarantine", "events")
        return f"{base}/dt={day.isoformat()}" if day else base

    def dataset(self, kind: str, run_date: date) -> str:
        """`train`, `test` (by run date) or `inference` (by snapshot date = run date)."""
        return self._join("datasets", kind, f"run_date={run_date.isoformat()}")

    def predictions(self, snapshot: date) -> str:
        return self._join("predictions", f"snapshot_date={snapshot.isoformat()}")

    def prediction_errors(self, snapshot: date) -> str:
        return self._join("prediction_errors", f"snapshot_date={snapshot.isoformat()}")


def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" in path:
        filesystem, local = pafs.FileSystem.from_uri(path)
        return filesystem, str(local)
    return pafs.LocalFileSystem(), path


def write_bytes(path: str, data: bytes) -> None:
    """Write bytes to a lake path (parent folders are created) under a temporary name, then
    rename it: a reader (or a crash) never sees a truncated file, e.g. a half-written
    manifest that says a dataset is done. On object stores a put is atomic by itself."""
    filesystem, local = _fs(path)
    filesystem.create_dir(local.rsplit("/", 1)[0], recursive=True)
    if filesystem.type_name not in ("local", "hdfs"):
        with filesystem.open_output_stream(local) as out:
            out.write(data)
        return
    partial = f"{local}.{uuid.uuid4().hex}.partial"
    try:
        with filesystem.open_output_stream(partial) as out:
            out.write(data)
        filesystem.move(partial, local)
    finally:
        if filesystem.get_file_info(partial).type != pafs.FileType.NotFound:
            filesystem.delete_file(partial)


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write a JSON document to a lake path (parent folders are created)."""
    write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=str).encode())


def read_json(path: str) -> dict[str, Any] | None:
    """The JSON document at a lake path, or None when there is none."""
    filesystem, local = _fs(path)
    if filesystem.get_file_info(local).type == pafs.FileType.NotFound:
        return None
    with filesystem.open_input_stream(local) as src:
        data: dict[str, Any] = json.loads(src.read().decode())
    return data


def exists(path: str) -> bool:
    filesystem, local = _fs(path)
    return bool(filesystem.get_file_info(local).type != pafs.FileType.NotFound)


def list_partitions(path: str, key: str) -> list[str]:
    """Values of `key=value` sub-folders of `path`, sorted."""
    filesystem, local = _fs(path)
    if filesystem.get_file_info(local).type == pafs.FileType.NotFound:
        return []
    infos = filesystem.get_file_info(pafs.FileSelector(local))
    prefix = f"{key}="
    return sorted(
        i.base_name[len(prefix):] for i in infos
        if i.type == pafs.FileType.Directory and i.base_name.startswith(prefix)
    )


def size(paths: list[str]) -> int:
    """Bytes in the files under `paths` (folders recursively; a missing path counts 0)."""
    total = 0
    for path in paths:
        filesystem, local = _fs(path)
        info = filesystem.get_file_info(local)
        if info.type == pafs.FileType.File:
            total += info.size or 0
        elif info.type == pafs.FileType.Directory:
            infos = filesystem.get_file_info(pafs.FileSelector(local, recursive=True))
            total += sum(i.size or 0 for i in infos if i.type == pafs.FileType.File)
    return total


def delete_dir(path: str) -> None:
    filesystem, local = _fs(path)
    if filesystem.get_file_info(local).type != pafs.FileType.NotFound:
        filesystem.delete_dir(local)


def manifest_path(dataset_path: str) -> str:
    return f"{dataset_path.rstrip('/')}/{MANIFEST}"


def content_hash(*parts: Any) -> str:
    """A stable sha256 over JSON-serialised parts (the basis of every data version)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:16]
