"""precast under real Airflow, used the way a person uses it.

`precast airflow up` starts the api-server, scheduler, dag-processor and triggerer on a
PostgreSQL metadata database of the test's own; the prediction store reaches the tasks
only through the Airflow connection `precast_predictions` (AIRFLOW_CONN_*), as a login in
the writer role of `precast store setup` (not a superuser), as production runs it. Headless
Debian Chromium (Selenium, no browser downloads) triggers `churn__training` from its
form; everything else is checked through the REST API, the lake and the lookup client.
Screenshots land in `.precast/test-artifacts/airflow-e2e/`. Everything is stopped at the
end, also on failure.

Needs Debian's `chromium` and `chromium-driver` (`make browser`); skipped with a reason
without them, unless PRECAST_TEST_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    FAST_START_SPARK,
    REPO,
    SMALL,
    World,
    make_world,
    pg_database,
    store_roles,
)

pytestmark = [pytest.mark.slow(minutes=13), pytest.mark.postgres,
              pytest.mark.timeout(1200)]  # the backfill test alone takes 3-7 min

PORT = 28081
ARTIFACTS = REPO / ".precast" / "test-artifacts" / "airflow-e2e"
PRECAST = str(Path(sys.executable).with_name("precast"))
TERMINAL = ("success", "failed")
LATER_DAYS = 2  # logs past the run date (see deployment)
MEMORY_CEILING_MB = 8 * 1024  # components + 2 task slots with a Spark driver each (docs/airflow.md)


def _browser_paths() -> tuple[str, str]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = "Debian chromium + chromium-driver are not installed (`make browser` installs them)"
    if os.environ.get("PRECAST_TEST_REQUIRE_BROWSER", "").lower() in {"1", "true", "yes"}:
        pytest.fail(reason)
    pytest.skip(reason)


class Rest:
    """A small client of Airflow's REST API (token from /auth/token, as any client does)."""

    def __init__(self, base: str) -> None:
        self.base = base
        with urllib.request.urlopen(f"{base}/auth/token", timeout=10) as resp:
            self.token = json.load(resp)["access_token"]

    def call(self, method: str, path: str, body: Any = None, accept: str = "application/json"
             ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.base}/api/v2{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": accept,
                     "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)

    def runs(self, dag_id: str, **query: str) -> list[dict[str, Any]]:
        qs = "&".join(f"{k}={v}" for k, v in {"order_by": "-run_after", **query}.items())
        return self.call("GET", f"/dags/{dag_id}/dagRuns?{qs}")["dag_runs"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, tuple[str | None, int]]:
        tis = self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return {t["task_id"]: (t["state"], t["try_number"]) for t in tis["task_instances"]}

    def quiet_schedules(self) -> None:
        """Fail the daily runs for today: the demo logs hold no data for today's date."""
        for dag_id in ("churn__training", "churn__predict"):
            for run in self.runs(dag_id, run_type="scheduled"):
                if run["state"] in ("queued", "running"):
                    self.call("PATCH", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}",
                              {"state": "failed"})

    def wait(self, dag_id: str, find: Any, timeout: float = 600) -> dict[str, Any]:
        """Poll until a run matching `find` reaches success or failed; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.quiet_schedules()
            found = [r for r in self.runs(dag_id) if find(r)]
            if found and found[0]["state"] in TERMINAL:
                return found[0]
            time.sleep(3)
        raise AssertionError(f"no finished {dag_id} run after {timeout}s: "
                             f"{[(r['dag_run_id'], r['state']) for r in self.runs(dag_id)[:5]]}")


@dataclass(frozen=True)
class Deployment:
    world: World
    url: str
    rest: Rest
    predictions_url: str
    env: dict[str, str]


class MemoryWatch(threading.Thread):
    """Samples the resident memory of every process of the deployment (components, executor
    workers, task runners, Spark JVMs: all in the components' sessions) once a second."""

    def __init__(self, airflow: Any) -> None:
        super().__init__(daemon=True)
        self.sessions = dict(airflow.sessions().values())
        self.samples_mb: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        import psutil

        from precast.orchestration.local import session_members

        while not self.stopping.wait(1.0):
            total = 0
            for proc in session_members(self.sessions):
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.samples_mb.append(round(total / 2**20))

    def report(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        return {"after_up_mb": self.samples_mb[0] if self.samples_mb else 0,
                "peak_mb": max(self.samples_mb, default=0), "samples": len(self.samples_mb)}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`precast airflow up` on PostgreSQL metadata; `precast airflow down` afterwards."""
    from precast.config import SparkConfig, with_search_path
    from precast.orchestration.local import LocalAirflow, session_members

    _browser_paths()
    root = tmp_path_factory.mktemp("airflow-e2e")
    with pg_database("precast_airflow") as metadata_url, \
            pg_database("precast_predictions") as predictions_url, \
            store_roles(with_search_path(predictions_url, "churn")) as roles:
        spark = {**SparkConfig().conf, **FAST_START_SPARK}
        # Logs go LATER_DAYS past the run date: the view's test trains a later champion.
        world = make_world(root, {"airflow": {"port": PORT, "metadata_url": metadata_url},
                                  "demo": {**SMALL["demo"],
                                           "days": SMALL["demo"]["days"] + LATER_DAYS},
                                  "engines": {"spark": {"master": "local[2]", "conf": spark}},
                                  "stores": {"writer_role": roles.writer}})
        env = {**os.environ, "PRECAST_CONFIG": str(world.config_path),  # tasks: the writer
               "AIRFLOW_CONN_PRECAST_PREDICTIONS": roles.login(predictions_url, roles.job)
               .replace("postgresql+psycopg://", "postgresql://"),
               # the precast view reads as a login in the reader role
               "AIRFLOW_CONN_PRECAST_PREDICTIONS_READER": roles.login(predictions_url, roles.app)
               .replace("postgresql+psycopg://", "postgresql://")}
        airflow = LocalAirflow(world.cfg, world.config_path)
        try:
            up = subprocess.run([PRECAST, "airflow", "up"], env=env, capture_output=True,
                                text=True, timeout=400, check=False)
            assert up.returncode == 0, up.stdout + up.stderr
            assert f"http://127.0.0.1:{PORT}" in up.stdout
            assert f"http://127.0.0.1:{PORT}/plugin/precast" in up.stdout
            watch = MemoryWatch(airflow)
            watch.start()
            yield Deployment(world, airflow.url, Rest(airflow.url), predictions_url,
                             airflow.environment())
            memory = watch.report()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "memory.json").write_text(json.dumps(memory))
            assert memory["peak_mb"] < MEMORY_CEILING_MB, memory
        finally:
            sessions = dict(airflow.sessions().values())  # before `down` removes the pid files
            down = subprocess.run([PRECAST, "airflow", "down"], env=env, capture_output=True,
                                  text=True, timeout=120, check=False)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for log in airflow.services.glob("*.log"):
                shutil.copy(log, ARTIFACTS / log.name)
            left = [p.pid for p in session_members(sessions)]
            assert down.returncode == 0, down.stdout + down.stderr
            assert sessions and left == [], f"left running after `precast airflow down`: {left}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = _browser_paths()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look online
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--lang=en-US",
                "--window-size=1400,1000"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    chrome.implicitly_wait(15)
    try:
        yield chrome
    finally:
        chrome.quit()


def _screenshot(browser: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert browser.save_screenshot(str(path)), f"no screenshot {path}"
    return path


def _when(timestamp: str) -> datetime:
    """A timestamp of Airflow's REST API as an aware datetime."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _wait_for_text(browser: Any, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in _body_text(browser):
        assert time.monotonic() < deadline, f"{text!r} not shown at {browser.current_url}"
        time.sleep(0.5)


def _body_text(browser: Any) -> str:
    """The page's text; empty while a page that follows a run reloads (its body found, then
    replaced before its text was read)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        return str(browser.find_element("tag name", "body").text)
    except StaleElementReferenceException:
        return ""


def _wait_for_url(browser: Any, part: str, timeout: float = 30) -> None:
    """Until the address holds `part` (Airflow may append the framed page's path to it)."""
    deadline = time.monotonic() + timeout
    while part not in browser.current_url:
        assert time.monotonic() < deadline, f"at {browser.current_url}, not at {part}"
        time.sleep(0.5)


def test_training_triggered_in_the_browser_then_predict_publishes(deployment, browser) -> None:
    import pyarrow.dataset as ds
    from selenium.webdriver.common.by import By

    from precast.lake import Lake
    from precast.model import registry
    from precast.serving.lookup import LookupClient

    world, rest = deployment.world, deployment.rest
    day = world.run_date.isoformat()
    browser.get(f"{deployment.url}/dags/churn__training")
    browser.find_element(By.CSS_SELECTOR, "button[aria-label='Trigger Dag']").click()
    field = browser.find_element(By.NAME, "element_snapshot_date")
    field.send_keys(world.run_date.strftime("%m%d%Y"))
    assert field.get_attribute("value") == day
    _screenshot(browser, "1-trigger-form.png")
    started = time.time()
    [submit] = [b for b in browser.find_elements(By.TAG_NAME, "button")
                if b.text.strip() == "Trigger" and b.get_attribute("aria-label") is None]
    submit.click()

    run = rest.wait("churn__training", lambda r: r["run_type"] == "manual"
                    and (r["conf"] or {}).get("snapshot_date") == day)
    states = rest.task_states("churn__training", run["dag_run_id"])
    assert run["state"] == "success", states
    assert run["conf"]["snapshot_date"] == day and not run["conf"].get("data_only")
    browser.get(f"{deployment.url}/dags/churn__training/runs/{run['dag_run_id']}")
    _wait_for_text(browser, "gate")
    _screenshot(browser, "2-training-grid.png")

    # The predict run that this training run's champion asset started (not an earlier one).
    predict = rest.wait("churn__predict", lambda r: r["run_type"] == "asset_triggered"
                        and _when(r["run_after"]) > _when(run["start_date"]))
    assert predict["state"] == "success", rest.task_states("churn__predict",
                                                             predict["dag_run_id"])
    browser.get(f"{deployment.url}/dags/churn__predict/runs/{predict['dag_run_id']}")
    _wait_for_text(browser, "publish")
    _screenshot(browser, "3-predict-grid.png")
    print(f"training + predict through Airflow: {time.time() - started:.0f}s")

    champion = registry.by_alias(world.cfg, registry.CHAMPION)
    assert champion is not None and champion.tags["run_date"] == day
    predictions = Lake(world.cfg.lake_root).predictions(world.run_date)
    ids = ds.dataset(predictions, format="parquet").head(5).column("entity_id").to_pylist()
    served_from = world.cfg.with_overrides({"stores.predictions_url": deployment.predictions_url})
    with LookupClient(served_from.predictions_url) as client:  # the use case's schema
        rows = client.get([*ids, "nobody"])
    assert [r.found for r in rows] == [True] * 5 + [False]
    assert {r.model_version for r in rows[:5]} == {str(champion.version)}
    assert not (world.cfg.space / "predictions.db").exists()  # the connection won over config


def test_corrupt_day_fails_at_extract_with_a_one_line_reason(deployment) -> None:
    world, rest = deployment.world, deployment.rest
    from precast.lake import Lake

    bad_day = world.run_date + timedelta(days=LATER_DAYS + 1)  # no logs there
    raw = Path(Lake(world.cfg.lake_root).raw_events(bad_day))
    raw.mkdir(parents=True)
    (raw / "part-0.jsonl").write_text("".join(f"not json {n}\n" for n in range(200)))
    run = rest.call("POST", "/dags/churn__training/dagRuns",
                    {"logical_date": None, "conf": {"snapshot_date": bad_day.isoformat()}})
    done = rest.wait("churn__training", lambda r: r["dag_run_id"] == run["dag_run_id"])
    states = rest.task_states("churn__training", run["dag_run_id"])
    assert done["state"] == "failed"
    assert states["extract"] == ("failed", 1), states  # not retried: retrying cannot help
    assert {t: s for t, (s, _) in states.items() if t != "extract"} == {
        t: "upstream_failed" for t in ("validate_events", "features", "validate_features",
                                       "train", "gate")}
    log = rest.call("GET", f"/dags/churn__training/dagRuns/{run['dag_run_id']}"
                           "/taskInstances/extract/logs/1")
    events = [e.get("event", "") for e in log["content"] if isinstance(e, dict)]
    reasons = [e for e in events if e.startswith("extract failed for") and "quarantine" in e]
    assert len(reasons) == 1, events
    assert bad_day.isoformat() in reasons[0] and "\n" not in reasons[0]
    assert (Path(Lake(world.cfg.lake_root).quarantine(bad_day))).exists()
    assert not Path(Lake(world.cfg.lake_root).events(bad_day)).exists()


def _outputs(world: World, days: list[date]) -> dict[str, Any]:
    """What the data steps produced for `days`: manifests' versions and counts, event keys."""
    import pyarrow.dataset as ds

    from precast.lake import Lake, manifest_path, read_json
    from precast.model import registry

    lake = Lake(world.cfg.lake_root)
    out: dict[str, Any] = {"model_versions": len(registry.client(world.cfg).search_model_versions(
        f"name = '{world.cfg.model.name}'"))}
    for day in days:
        events = ds.dataset(lake.events(day), format="parquet").to_table(columns=["event_id"])
        ids = events.column("event_id").to_pylist()
        out[f"events {day}"] = (len(ids), len(set(ids)))
        for kind in ("train", "test", "inference"):
            manifest = read_json(manifest_path(lake.dataset(kind, day))) or {}
            out[f"{kind} {day}"] = (manifest["row_count"], manifest["data_version"])
    return out


def test_backfill_of_data_steps_is_idempotent(deployment) -> None:
    world, rest = deployment.world, deployment.rest
    days = [world.run_date - timedelta(days=n) for n in (1, 0)]  # two runs make a backfill

    def backfill(span: list[date], *extra: str) -> list[dict[str, Any]]:
        command = [sys.executable, "-m", "airflow", "backfill", "create", "--dag-id",
                   "churn__training", "--from-date", span[0].isoformat(), "--to-date",
                   span[-1].isoformat(), "--dag-run-conf", json.dumps({"data_only": True}),
                   *extra]
        done = subprocess.run(command, env=deployment.env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        newest = max(rest.call("GET", "/backfills?dag_id=churn__training")["backfills"],
                     key=lambda b: b["id"])
        deadline = time.monotonic() + 900  # a hang guard, not a speed check
        while rest.call("GET", f"/backfills/{newest['id']}")["completed_at"] is None:
            assert time.monotonic() < deadline, f"backfill {newest['id']} did not complete"
            rest.quiet_schedules()
            time.sleep(3)
        runs = {r["logical_date"][:10]: r for r in rest.runs("churn__training",
                                                             run_type="backfill")}
        return [runs[d.isoformat()] for d in span]
    first = backfill(days)
    assert [r["state"] for r in first] == ["success"] * len(days)
    for run in first:
        states = rest.task_states("churn__training", run["dag_run_id"])
        assert states["train"][0] == states["gate"][0] == "skipped", states
        assert states["features"][0] == "success", states
    before = _outputs(world, days)
    assert all(before[key][0] == before[key][1] for key in before if key.startswith("events"))

    # The later day again (its features read the earlier day's events too): nothing changes.
    (again,) = backfill(days[-1:], "--reprocess-behavior", "completed")
    assert again["state"] == "success"
    assert rest.task_states("churn__training", again["dag_run_id"])["extract"][1] >= 2
    assert _outputs(world, days) == before


def test_a_retrain_request_starts_training_for_its_date(deployment) -> None:
    """The churn__retrain asset event (what churn__monitor's retrain_rule emits) makes the
    scheduler start churn__training, which works on the date the event carries."""
    world, rest = deployment.world, deployment.rest
    day = world.run_date.isoformat()
    (asset,) = [a for a in rest.call("GET", "/assets?name_pattern=churn__retrain")["assets"]
                if a["name"] == "churn__retrain"]
    # churn__predict paused meanwhile: a champion this training promotes would start a predict
    # run, and a monitor run after it, that no test waits for (still running under the next).
    rest.call("PATCH", "/dags/churn__predict", {"is_paused": True})
    try:
        event = rest.call("POST", "/assets/events", {
            "asset_id": asset["id"], "extra": {"snapshot_date": day, "reason": "retrain: e2e"}})
        run = rest.wait("churn__training", lambda r: r["run_type"] == "asset_triggered")
    finally:
        rest.call("PATCH", "/dags/churn__predict", {"is_paused": False})
    states = rest.task_states("churn__training", run["dag_run_id"])
    assert run["state"] == "success", states
    assert {t: s for t, (s, _) in states.items()} == dict.fromkeys(
        ("extract", "validate_events", "features", "validate_features", "train", "gate"),
        "success")
    consumed = rest.call("GET", f"/dags/churn__training/dagRuns/{run['dag_run_id']}"
                                "/upstreamAssetEvents")["asset_events"]
    assert [e["id"] for e in consumed] == [event["id"]]
    log = rest.call("GET", f"/dags/churn__training/dagRuns/{run['dag_run_id']}"
                           "/taskInstances/train/logs/1")
    lines = [e.get("event", "") for e in log["content"] if isinstance(e, dict)]
    assert f"precast step train for {day} (in-process)" in lines, lines


def _published(deployment: Deployment) -> list[Any]:
    """The use case's published snapshots (read as the superuser, for the test's checks;
    none before the first publish)."""
    from precast import store
    from precast.config import with_search_path

    return [s for s in store.snapshots(with_search_path(deployment.predictions_url, "churn"))
            if s.status == "published"]


def _into_the_view(browser: Any, url: str) -> None:
    """From Airflow's home page through the navigation into the precast view's frame."""
    from selenium.webdriver.common.by import By

    browser.switch_to.default_content()
    browser.get(f"{url}/")
    # The plugin's entry in the navigation bar (Airflow renders it as "precast").
    browser.find_element(By.XPATH, "//*[normalize-space(text())='precast']").click()
    _wait_for_url(browser, "/plugin/precast")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='precast']"))


def _framed_screenshot(browser: Any, name: str) -> None:
    """A screenshot of the whole window (Airflow around the view), then back in the frame."""
    from selenium.webdriver.common.by import By

    browser.switch_to.default_content()
    _screenshot(browser, name)
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='precast']"))


def _train_and_publish(rest: Rest, day: str) -> None:
    """A training run for `day` whose champion's predict run publishes a snapshot."""
    started = rest.call("POST", "/dags/churn__training/dagRuns", {
        "logical_date": None, "conf": {"snapshot_date": day, "tolerance": 1.0}})
    run = rest.wait("churn__training", lambda r: r["dag_run_id"] == started["dag_run_id"])
    assert run["state"] == "success", rest.task_states("churn__training", run["dag_run_id"])
    predict = rest.wait("churn__predict", lambda r: r["run_type"] == "asset_triggered"
                        and _when(r["run_after"]) > _when(run["start_date"]))
    assert predict["state"] == "success", rest.task_states("churn__predict",
                                                             predict["dag_run_id"])


def test_the_precast_view_rolls_back_to_an_older_snapshot_with_a_reason(deployment,
                                                                         browser) -> None:
    """From Airflow's navigation to the precast view: the champion and the served snapshot,
    the gate report, then "roll back" on the older champion's snapshot with a reason, the
    __rollback run followed to its end, and the view showing what changed."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    world, rest = deployment.world, deployment.rest
    day = world.run_date.isoformat()
    assert rest.call("GET", "/plugins/importErrors")["import_errors"] == []
    if not _published(deployment):  # the first champion and its snapshot, for the run date
        _train_and_publish(rest, day)
    # A later champion, trained on LATER_DAYS more days of logs, and its newer snapshot.
    _train_and_publish(rest, (world.run_date + timedelta(days=LATER_DAYS)).isoformat())
    snapshots = _published(deployment)
    newest = max(snapshots, key=lambda s: s.snapshot_id)
    older = max((s for s in snapshots if s.model_version != newest.model_version),
                key=lambda s: s.snapshot_id)
    assert newest.current

    _into_the_view(browser, deployment.url)
    _wait_for_text(browser, f"#{newest.snapshot_id} for {newest.snapshot_date}")
    assert f"v{newest.model_version}" in _body_text(browser)
    _framed_screenshot(browser, "ui-1-overview.png")

    browser.find_element(By.CSS_SELECTOR, "td a[href$='/uc/churn']").click()
    _wait_for_text(browser, "Champion history")
    browser.find_element(By.CSS_SELECTOR, "a[href*='/report/gate/']").click()
    _wait_for_text(browser, "PROMOTED")  # the report's verdict
    _framed_screenshot(browser, "ui-2-gate-report.png")

    _into_the_view(browser, deployment.url)
    browser.find_element(By.CSS_SELECTOR, "td a[href$='/uc/churn']").click()
    reason = "v2 over-predicts churn for tv users, back to the older champion"
    row = browser.find_element(By.ID, f"snapshot-{older.snapshot_id}")
    Select(row.find_element(By.NAME, "target")).select_by_value(f"model:{older.model_version}")
    row.find_element(By.NAME, "reason").send_keys(reason)
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", row)
    _framed_screenshot(browser, "ui-3-roll-back.png")
    row.find_element(By.TAG_NAME, "button").click()
    _wait_for_text(browser, "churn__rollback")
    _wait_for_text(browser, "(success)", timeout=300)  # the page follows the run
    runs = rest.runs("churn__rollback")
    assert runs[0]["conf"] == {"target": f"model:{older.model_version}", "reason": reason}
    browser.find_element(By.LINK_TEXT, "back to churn").click()
    _wait_for_text(browser, f"#{older.snapshot_id} for")
    served = browser.find_element(By.XPATH, "//h2[.='Served now']/following-sibling::table[1]")
    assert f"#{older.snapshot_id} for" in served.text
    assert f"v{older.model_version}" in served.text
    history = browser.find_element(By.XPATH, "//h2[.='Champion history']/following::table[1]")
    assert reason in history.text and "rollback" in history.text
    _framed_screenshot(browser, "ui-4-rolled-back.png")
    [current] = [s for s in _published(deployment) if s.current]
    assert current.snapshot_id == older.snapshot_id and current.activation_reason == reason
