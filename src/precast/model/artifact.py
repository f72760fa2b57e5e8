"""The model artifact: an XGBoost booster plus the feature spec it was trained on.

Scoring goes through :func:`to_frame` / :func:`predict`, which refuse columns that
do not match the spec, so features can never be silently misaligned.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from precast.errors import NotRetryable

if TYPE_CHECKING:
    import xgboost as xgb

BOOSTER_FILE = "model.ubj"
SPEC_FILE = "features.json"


class FeatureMismatchError(NotRetryable, ValueError):
    """The frame to score does not carry the features the model was trained on."""


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered feature names; categorical ones carry their vocabulary."""

    names: tuple[str, ...]
    categorical: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names),
                "categorical": {k: list(v) for k, v in self.categorical.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls(tuple(data["names"]),
                   {k: tuple(v) for k, v in data.get("categorical", {}).items()})


def to_frame(data: pd.DataFrame | pa.Table, spec: FeatureSpec) -> pd.DataFrame:
    """The model's input: exactly `spec.names` in order, categoricals on their vocabulary.

    Takes a pandas frame or an Arrow table (scoring converts Arrow columns straight to the
    model's dtypes, without a pandas copy of the whole batch first).
    """
    present = data.column_names if isinstance(data, pa.Table) else list(data.columns)
    missing = [n for n in spec.names if n not in present]
    if missing:
        raise FeatureMismatchError(f"features missing from input: {missing}")
    columns = {name: _feature(data[name], name, spec) for name in spec.names}
    index = None if isinstance(data, pa.Table) else data.index
    return pd.DataFrame(columns, index=index, copy=False)


def _feature(values: Any, name: str, spec: FeatureSpec) -> Any:
    """One feature column in the model's dtype (float64, or categorical on its vocabulary)."""
    if isinstance(values, pa.ChunkedArray):
        if name in spec.categorical:
            values = values.to_pandas()
        else:
            try:
                return pc.cast(values, pa.float64()).to_numpy()  # nulls become NaN
            except pa.ArrowInvalid as exc:
                raise ValueError(f"feature {name} is not numeric: {exc}") from None
    if name in spec.categorical:
        return pd.Categorical(values, categories=list(spec.categorical[name]))
    return pd.to_numeric(values, errors="raise").astype("float64")


def predict(booster: xgb.Booster, df: pd.DataFrame | pa.Table, spec: FeatureSpec) -> np.ndarray:
    """Scores for `df`: the booster's output, a probability of the positive class (binary) or
    the predicted value (regression); no DMatrix is built."""
    if list(booster.feature_names or []) != list(spec.names):
        raise FeatureMismatchError(
            f"booster features {booster.feature_names} differ from spec {list(spec.names)}"
        )
    return np.asarray(booster.inplace_predict(to_frame(df, spec)), dtype="float64")


def save(directory: Path, booster: xgb.Booster, spec: FeatureSpec) -> Path:
    """Write booster and spec into `directory` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(directory / BOOSTER_FILE))
    (directory / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2))
    return directory


def model_bytes(booster: xgb.Booster) -> bytes:
    """The booster exactly as :func:`save` (and the MLflow flavor) writes it: UBJSON."""
    return bytes(booster.save_raw(raw_format="ubj"))


def sha256(booster: xgb.Booster) -> str:
    """Fingerprint of :func:`model_bytes` (recorded on each version, compared by retrain)."""
    return hashlib.sha256(model_bytes(booster)).hexdigest()


def load(directory: Path) -> tuple[xgb.Booster, FeatureSpec]:
    """Read what :func:`save` wrote."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(str(directory / BOOSTER_FILE))
    spec = FeatureSpec.from_dict(json.loads((directory / SPEC_FILE).read_text()))
    return booster, spec
