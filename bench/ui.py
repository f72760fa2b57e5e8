"""The precast view's pages (precast.ui) on a long-lived store: 500 snapshots, 10,000 alerts,
50 champion changes and 100 days of monitoring figures, against the same pages on a store
with one snapshot and no alert, both measured in this run.

Stores are filled through precast's own writers (store.publish with retention, champions.
record, alerts.raise_alerts, model_metrics.write_metrics); the pages are served by Airflow's
real api-server app (in process, a signed-in user's JWT), on SQLite and, when it answers, on
PostgreSQL read as the reader role. Goal: every page under a second.

    python -m bench ui
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.common import (
    PG_ADMIN_URL,
    Row,
    Sizes,
    bench_home,
    database,
    median,
    missing_row,
    secs,
)
from precast.config import Config, load_config, with_search_path

log = logging.getLogger(__name__)

FAMILY = "ui"
SNAPSHOTS, ALERTS, CHAMPIONS, METRIC_DAYS = 500, 10_000, 50, 100
PAGES = ("/", "/uc/churn")
REPEATS = 5
GOAL_S = 1.0
FIRST_DAY = date(2025, 1, 1)


def _config(root: Path, store_url: str | None) -> Path:
    """A churn use-case config under `root` (its own home), on `store_url` if given."""
    import yaml

    from bench.common import CHURN

    data = yaml.safe_load(CHURN.read_text())
    data["home"] = str(root / "home")
    if store_url:
        data.setdefault("stores", {})["predictions_url"] = store_url
        data.setdefault("serve", {})["database_url"] = store_url
    root.mkdir(parents=True, exist_ok=True)
    for item in CHURN.parent.iterdir():  # the SQL and suites the config names
        if item.name != CHURN.name and not (root / item.name).exists():
            (root / item.name).symlink_to(item)
    path = root / "precast.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _fill(cfg: Config, snapshots: int, alerts: int, champions_n: int, days: int) -> None:
    """Write a store's history through precast's writers (checked: the view sees it all)."""
    from precast import store
    from precast.gate import champions
    from precast.monitoring import alerts as alerting
    from precast.monitoring.model_metrics import MetricRow, write_metrics

    url, model = cfg.predictions_url, cfg.model.name
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(snapshots):
        day = FIRST_DAY + timedelta(days=n)
        batch = pa.RecordBatch.from_pydict({
            "entity_id": [f"u{i}" for i in range(3)], "score": [0.1, 0.5, 0.9],
            "scored_at": pa.array([at] * 3, pa.timestamp("us", tz="UTC"))})
        meta = store.SnapshotMeta(day, model, str(1 + n * champions_n // max(snapshots, 1)),
                                  f"data-{n}", mlflow_run_id=f"run-{n}",
                                  training_data_version=f"train-{n}", code_version="bench")
        store.publish(url, [batch], meta, keep=cfg.stores.keep_snapshots)
    for n in range(champions_n):
        champions.record(url, model, str(n + 1), decided_by="gate", decision="gate",
                         reason=f"passed all rules ({n})", at=at + timedelta(days=n))
    quiet = logging.getLogger(alerting.__name__)
    level, quiet.level = quiet.level, logging.ERROR  # one warning per alert otherwise
    try:
        alerting.raise_alerts(cfg, [
            alerting.Alert(FIRST_DAY + timedelta(days=n % days), "psi", f"feature_{n}",
                           f"psi of feature_{n} above 0.2", 0.3, 0.2,
                           "critical" if n % 7 == 0 else "warning") for n in range(alerts)])
    finally:
        quiet.level = level
    for n in range(days):
        write_metrics(cfg, FIRST_DAY + timedelta(days=n), "1", "performance", [
            MetricRow("score", "roc_auc", 0.7 + (n % 10) / 100, rows_used=1000),
            MetricRow("score", "log_loss", 0.4 - (n % 10) / 100, rows_used=1000)])
    from precast.ui import status

    seen = status.read_store(cfg, cfg.predictions_url, detail=True)
    assert (len(seen.snapshots), seen.alerts_total, len(seen.history)) == (
        snapshots, alerts, champions_n), (len(seen.snapshots), seen.alerts_total)


@contextlib.contextmanager
def _api() -> Iterator[Any]:
    """Airflow's api-server app (core) on a fresh metadata database; a viewer's headers."""
    home = Path(tempfile.mkdtemp(prefix="precast-bench-airflow-"))
    os.environ.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                       "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer"})
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True,
                   capture_output=True)
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    with TestClient(create_app("core")) as client:
        token = get_auth_manager().generate_jwt(
            SimpleAuthManagerUser(username="viewer", role="viewer"))
        yield client, {"Authorization": f"Bearer {token}"}


def _time_pages(client: Any, headers: dict[str, str], config: Path) -> dict[str, float]:
    """Median seconds per page (after one warm-up request) for the use case in `config`."""
    os.environ["PRECAST_USE_CASES"] = str(config)
    out = {}
    for page in PAGES:
        first = client.get(f"/precast{page}", headers=headers)
        if first.status_code != 200:
            raise RuntimeError(f"GET /precast{page}: {first.status_code} {first.text[:300]}")
        times = []
        for _ in range(REPEATS):
            began = time.perf_counter()
            client.get(f"/precast{page}", headers=headers)
            times.append(time.perf_counter() - began)
        out[page] = median(times)
    return out


def _rows(backend: str, big: dict[str, float], small: dict[str, float]) -> list[Row]:
    rows = []
    for page in PAGES:
        rows.append(Row(FAMILY, f"{backend}: GET {page} with {SNAPSHOTS} snapshots, "
                                f"{ALERTS:,} alerts", secs(big[page]),
                        f"{secs(small[page])} (1 snapshot, no alert)",
                        big[page] / small[page] if small[page] else None, f"< {GOAL_S:g} s",
                        big[page] < GOAL_S, {"seconds": big[page], "baseline": small[page]}))
    return rows


def run(sizes: Sizes) -> tuple[list[Row], list[str]]:
    """Both stores on SQLite, then on PostgreSQL (read as the reader role)."""
    del sizes  # the store's size is the issue's, not a row count
    root = Path(tempfile.mkdtemp(prefix="ui-", dir=bench_home()))
    out: list[Row] = []
    began = time.perf_counter()
    with _api() as (client, headers):
        small, big = _config(root / "small", None), _config(root / "big", None)
        _fill(load_config(small), 1, 0, 1, 1)
        _fill(load_config(big), SNAPSHOTS, ALERTS, CHAMPIONS, METRIC_DAYS)
        out += _rows("sqlite", _time_pages(client, headers, big),
                     _time_pages(client, headers, small))
        try:
            out += _postgres(root, client, headers)
        except Exception as exc:  # noqa: BLE001 - reported as unmeasured
            log.exception("ui benchmark on PostgreSQL failed")
            out.append(missing_row(FAMILY, "postgresql pages", str(exc).splitlines()[0]))
    notes = [f"ui: filled and measured in {time.perf_counter() - began:.0f} s; medians of "
             f"{REPEATS} requests after a warm-up, through Airflow's app in process"]
    return out, notes


def _postgres(root: Path, client: Any, headers: dict[str, str]) -> list[Row]:
    from precast import store

    timings, roles = {}, []
    with database("ui_small") as small_url, database("ui_big") as big_url:
        for tag, url, shape in (("small", small_url, (1, 0, 1, 1)),
                                ("big", big_url, (SNAPSHOTS, ALERTS, CHAMPIONS, METRIC_DAYS))):
            path = _config(root / f"pg-{tag}", url)
            cfg = load_config(path)
            _fill(cfg, *shape)
            reader = f"precast_bench_reader_{tag}"
            roles += [reader, f"precast_bench_writer_{tag}"]
            store.setup(with_search_path(url, cfg.store_schema), reader=reader,
                        writer=roles[-1])
            login = f"{reader}_login"
            with store.make_engine(url).begin() as conn:
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{login}"')
                conn.exec_driver_sql(f'CREATE ROLE "{login}" LOGIN IN ROLE "{reader}"')
            _config(root / f"pg-{tag}", url.replace("postgres@", f"{login}@", 1))
            try:
                timings[tag] = _time_pages(client, headers, path)
            finally:
                with store.make_engine(PG_ADMIN_URL).begin() as conn:
                    conn.exec_driver_sql(f'DROP OWNED BY "{login}"')
                    conn.exec_driver_sql(f'DROP ROLE "{login}"')
    with store.make_engine(PG_ADMIN_URL).begin() as conn:  # their databases are gone
        for role in roles:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
    return _rows("postgresql", timings["big"], timings["small"])
