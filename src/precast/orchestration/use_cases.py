"""The use cases a DAG file builds DAGs for (PRECAST_USE_CASES, else PRECAST_CONFIG, else
./precast.yaml), with what their DAGs need at parse time: name, config file, schedules,
Airflow connections and variable, and the assets they emit. Airflow and the standard library
only at import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

if TYPE_CHECKING:
    from precast.config import Config

# What every precast DAG shares (schedule, Params, tags and callbacks are each DAG's own).
DAG_DEFAULTS: dict[str, Any] = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC), "catchup": False, "max_active_runs": 1}
# airflow.connections key -> the config field its connection overrides.
CONNECTION_FIELDS = {"predictions": "stores.predictions_url",
                     "mlflow": "stores.mlflow_tracking_uri",
                     "spark": "engines.spark.master",
                     "reader": "serve.database_url"}  # the lookup API's and the view's login


@dataclass(frozen=True)
class UseCase:
    """What a use case's DAGs need at parse time: its name, config file and Airflow settings."""

    name: str
    config: Path
    schedules: dict[str, str]
    connections: dict[str, str]  # config field -> Airflow connection id
    lake_variable: str

    def dag_id(self, role: str) -> str:
        return f"{self.name}__{role}"

    def _asset(self, what: str) -> Asset:
        return Asset(name=f"{self.name}__{what}", uri=f"file:///precast/{self.name}/{what}")

    @property
    def champion_asset(self) -> Asset:
        """Emitted by the gate on promotion; schedules the use case's predict DAG."""
        return self._asset("champion")

    @property
    def predictions_asset(self) -> Asset:
        """Emitted by publish; schedules the use case's monitor DAG."""
        return self._asset("predictions")

    @property
    def retrain_asset(self) -> Asset:
        """Emitted by monitor when the retrain rule holds; schedules its training DAG."""
        return self._asset("retrain")

    def load(self, overrides: dict[str, str] | None = None) -> Config:
        """The use case's validated config (PRECAST_* overrides, then `overrides`)."""
        from precast.config import load_config

        cfg = load_config(self.config)
        return cfg.with_overrides(dict(overrides)) if overrides else cfg


def use_cases(environ: dict[str, str] | None = None) -> list[UseCase]:
    """Every configured use case (precast.use_case.configured: config files only, no Spark,
    Beam or MLflow imports)."""
    from precast.use_case import configured

    return [UseCase(cfg.name, path, dict(cfg.airflow.schedules),
                    {CONNECTION_FIELDS[k]: conn for k, conn in cfg.airflow.connections.items()},
                    cfg.airflow.lake_variable)
            for path, cfg in configured(environ)]
