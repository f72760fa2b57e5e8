"""The precast view (precast.ui) inside Airflow's real api-server app, in process: the plugin
comes from the installed `airflow.plugins` entry point, users and their JWTs from Airflow's
simple auth manager with sign-in required (all_admins off). What the view shows is read from
real stores: the session's world (training and predict run), an empty use case, and a
PostgreSQL store read as the reader role. The browser path (navigation, rollback through the
DAG) is tests/integration/test_airflow_e2e.py."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import SHOP, pg_database, store_roles, use_case_copy, write_world_config

ACCOUNTS = {"admin": "admin", "viewer": "viewer"}  # simple auth manager: user -> role
SIGN_IN_REQUIRED = {
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in ACCOUNTS.items()),
}


@dataclass
class Api:
    client: Any

    def as_(self, who: str | None) -> dict[str, str]:
        """Request headers of a signed-in user (a JWT Airflow issued), or none."""
        if who is None:
            return {}
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

        token = get_auth_manager().generate_jwt(
            SimpleAuthManagerUser(username=who, role=ACCOUNTS[who]))
        return {"Authorization": f"Bearer {token}"}

    def get(self, path: str, who: str | None = "viewer") -> Any:
        return self.client.get(f"/precast{path}", headers=self.as_(who))

    def post(self, path: str, form: dict[str, str], who: str | None = "admin") -> Any:
        return self.client.post(f"/precast{path}", data=form, headers=self.as_(who),
                                follow_redirects=False)


@pytest.fixture(scope="module")
def api(airflow_db: None) -> Iterator[Api]:
    """Airflow's api-server app (core), sign-in required, with the plugins it finds."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    before = {k: os.environ.get(k) for k in SIGN_IN_REQUIRED}
    os.environ.update(SIGN_IN_REQUIRED)
    try:
        with TestClient(create_app("core")) as client:
            yield Api(client)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def serving(monkeypatch: pytest.MonkeyPatch) -> Any:
    """`serving(*configs)`: the use cases this Airflow deployment has."""
    from precast.use_case import USE_CASES_ENV

    def set_use_cases(*configs: Path) -> None:
        monkeypatch.delenv("PRECAST_CONFIG", raising=False)
        monkeypatch.setenv(USE_CASES_ENV, os.pathsep.join(str(c) for c in configs))

    return set_use_cases


def _text(html: str) -> str:
    """The page's visible text, tags dropped, spaces collapsed."""
    return " ".join(re.sub(r"<(style|script)[^>]*>.*?</\1>|<[^>]+>", " ", html,
                           flags=re.S).split())


def test_the_plugin_is_registered_through_its_entry_point(api: Api) -> None:
    from airflow import plugins_manager

    plugins, errors = plugins_manager._get_plugins()
    # The checkout's precast.egg-info is on this process's sys.path too: Airflow then finds
    # the entry point twice and skips the second (`airflow up` keeps the working directory
    # off sys.path; the browser test checks that its deployment has no import error).
    assert set(errors.values()) <= {"Plugin 'precast' already registered, skipping"}, errors
    precast = [p for p in plugins if p.name == "precast"]
    assert len(precast) == 1
    assert "group='airflow.plugins'" in str(precast[0].source)
    views = [v for v in precast[0].external_views if v["destination"] == "nav"]
    assert views and views[0]["href"] == "precast/"


@pytest.mark.parametrize("path", ["/", "/uc/churn", "/uc/churn/report/gate/x/y.html",
                                  "/uc/churn/runs/churn__rollback/r1"])
def test_unauthenticated_requests_are_refused(api: Api, serving: Any, world: Any,
                                              path: str) -> None:
    serving(world.config_path)
    refused = api.get(path, who=None)
    assert refused.status_code == 401, refused.text
    assert "sign in to Airflow first" in _text(refused.text)
    assert "churn" not in _text(refused.text).replace("/uc/churn", "")
    posted = api.post("/uc/churn/rollback", {"target": "snapshot:1", "reason": "x" * 5},
                      who=None)
    assert posted.status_code == 401
    forged = api.client.get(f"/precast{path}", headers={"Authorization": "Bearer not-a-jwt"})
    assert forged.status_code in (401, 403)


def test_the_overview_and_the_use_case_page_show_the_world(api: Api, serving: Any,
                                                          world: Any) -> None:
    from precast import store
    from precast.gate import champions

    serving(world.config_path)
    served = store.current(world.cfg.predictions_url)
    champion = champions.current(world.cfg.predictions_url, world.cfg.model.name)
    assert served is not None and champion is not None
    page = api.get("/")
    assert page.status_code == 200, page.text
    text = _text(page.text)
    assert f"v{champion.model_version}" in text and f"#{served.snapshot_id}" in text
    assert f"{served.row_count:,} rows" in text and str(served.snapshot_date) in text
    assert "Nothing published yet" not in text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside

    detail = api.get("/uc/churn")
    assert detail.status_code == 200, detail.text
    text = _text(detail.text)
    for shown in (served.data_version, served.code_version, champion.reason,
                  "Latest validation", "events", "features", "predictions"):
        assert shown and shown in text, shown
    assert "read only" in text and "<form" not in detail.text  # a viewer may not act
    reports = re.findall(r'href="(/precast/uc/churn/report/gate/[^"]+)"', detail.text)
    assert reports, "no gate report linked"
    report = api.client.get(reports[0], headers=api.as_("viewer"))
    assert report.status_code == 200 and "<svg" in report.text
    escape = api.get("/uc/churn/report/gate/..%2F..%2F/precast.yaml")
    assert escape.status_code == 404


def test_actions_need_the_right_to_start_runs_a_token_and_a_reason(api: Api, serving: Any,
                                                                  world: Any) -> None:
    serving(world.config_path)
    form = {"target": "snapshot:1", "reason": "bad scores"}
    assert api.post("/uc/churn/rollback", form, who="viewer").status_code == 403
    page = api.get("/uc/churn", who="admin")
    assert "<form" in page.text  # the admin may act
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert token is not None
    refused = api.post("/uc/churn/rollback", form)  # no token
    assert refused.status_code == 403 and "token" in _text(refused.text)
    no_reason = api.post("/uc/churn/rollback", {**form, "reason": " ", "csrf": token[1]})
    assert no_reason.status_code == 400 and "reason is required" in _text(no_reason.text)
    # The world serves its only snapshot: nothing retained to roll back to.
    nothing = api.post("/uc/churn/rollback", {**form, "csrf": token[1]})
    assert nothing.status_code == 400 and "cannot roll back to" in _text(nothing.text)
    pin = api.post("/uc/churn/promote", {"action": "delete", "reason": "why", "csrf": token[1]})
    assert pin.status_code == 400


def test_several_use_cases_each_get_their_row_and_page(api: Api, serving: Any, world: Any,
                                                       tmp_path: Path) -> None:
    shop = use_case_copy(tmp_path / "shop", {"home": str(tmp_path / "shop-home")}, SHOP)
    serving(world.config_path, shop)
    html = api.get("/").text
    rows = {name: _text(row) for row in re.findall(r"<tr><td>.*?</tr>", html, flags=re.S)
            for name in re.findall(r'href="/precast/uc/(\w+)"', row)[:1]}
    assert sorted(rows) == ["churn", "shop"]
    assert "none published" not in rows["churn"] and "fresh" in rows["churn"]
    assert rows["shop"].startswith("shop none yet none published")
    assert "Nothing published yet" not in _text(html)  # one use case has published
    page = _text(api.get("/uc/shop").text)
    assert "Nothing published yet" in page and "examples/shop demo-data" in page


def test_a_use_case_with_nothing_published_says_what_to_run(api: Api, serving: Any,
                                                           tmp_path: Path) -> None:
    empty = write_world_config(tmp_path / "empty", {})
    serving(empty.config_path)
    for path in ("/", "/uc/churn"):
        page = api.get(path)
        assert page.status_code == 200, page.text
        text = _text(page.text)
        assert "Nothing published yet" in text and "demo-data --until today" in text, text
    assert not (empty.cfg.space / "predictions.db").exists()  # reading made no store

    serving()
    assert "No use case is configured" in _text(api.get("/").text)


def test_a_config_that_cannot_be_read_is_named_not_a_bare_500(api: Api, serving: Any,
                                                              tmp_path: Path) -> None:
    broken = tmp_path / "broken" / "precast.yaml"
    broken.parent.mkdir()
    broken.write_text("name: churn\ngate: {tolerance: -1}\n")
    serving(broken)
    page = api.get("/")
    assert page.status_code == 500
    assert "cannot be read" in _text(page.text) and "gate.tolerance" in _text(page.text)


@pytest.mark.postgres
def test_a_postgresql_store_is_read_as_the_reader_and_never_written(
        api: Api, serving: Any, tmp_path: Path) -> None:
    import pyarrow as pa
    import sqlalchemy as sa

    from precast import store
    from precast.config import with_search_path
    from precast.gate import champions
    from precast.ui import status

    with pg_database("precast_ui") as url, store_roles(with_search_path(url, "churn")) as roles:
        writer = with_search_path(roles.login(url, roles.job), "churn")
        batch = pa.RecordBatch.from_pydict({
            "entity_id": ["u1", "u2"], "score": [0.2, 0.7],
            "scored_at": pa.array([datetime(2026, 2, 1, tzinfo=UTC)] * 2,
                                  pa.timestamp("us", tz="UTC"))})
        world = write_world_config(tmp_path / "pg", {"stores": {"predictions_url": url}})
        model = world.cfg.model.name
        meta = store.SnapshotMeta(date(2026, 2, 1), model, "3", "data-3",
                                  code_version="code-abc")
        store.publish(writer, [batch], meta, keep=3,
                      policy=store.WritePolicy(writer_role=roles.writer))
        champions.record(writer, model, "3", decided_by="gate", decision="gate",
                         reason="first champion")
        serving(world.config_path)
        missing = _text(api.get("/").text)
        assert "no reader login is configured" in missing and "v3" not in missing

        reader = roles.login(url, roles.app)
        with_reader = write_world_config(tmp_path / "pg-reader", {
            "stores": {"predictions_url": url}, "serve": {"database_url": reader}})
        serving(with_reader.config_path)
        text = _text(api.get("/uc/churn").text)
        assert "v3" in text and "first champion" in text and "code-abc" in text
        engine = status.reader_engine(status.reader_url(with_reader.cfg))
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"):
            with engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM champion_history")
        engine.dispose()
