"""The datasets contract between the steps: the kinds, the row key and label columns, and how
a step reads a dataset the features step wrote."""

from __future__ import annotations

from typing import Any

import pandas as pd

from precast.config import EventsConfig
from precast.lake import manifest_path, read_json

KINDS = ("train", "test", "inference")
SNAPSHOT = "snapshot_date"
LABEL = "label"


def key_columns(events: EventsConfig) -> tuple[str, str]:
    """The key of every dataset row: the use case's entity key and the snapshot date."""
    return (events.entity_key, SNAPSHOT)


def load_dataset(path: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A features dataset (sorted by key) and its manifest; clear error when absent."""
    manifest = read_json(manifest_path(path))
    if manifest is None:
        raise FileNotFoundError(f"no dataset at {path}; run the features step first")
    if "key_columns" not in manifest:
        raise FileNotFoundError(f"the dataset at {path} names no key_columns (written by an "
                                "older precast); run the features step again")
    df = pd.read_parquet(path).sort_values(list(manifest["key_columns"]), kind="stable")
    return df.reset_index(drop=True), manifest
