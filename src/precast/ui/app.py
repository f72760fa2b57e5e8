"""The precast view: a FastAPI app that Airflow's api-server mounts at /precast (see
precast.ui.plugin). Every endpoint needs a signed-in Airflow user (its JWT, from the UI's
cookie or a Bearer header) and asks Airflow's auth manager what that user may do: a use case
is shown to whoever may read its DAGs' runs, and its rollback and promote forms to whoever
may start runs of its `__rollback` / `__promote` DAG. The view reads the store as its reader
and writes nothing: an action starts the audited DAG run, whose task does the work."""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from precast.config import Config
from precast.orchestration.use_cases import CONNECTION_FIELDS, UseCase, use_cases
from precast.ui import MOUNT, pages, runs, status

log = logging.getLogger(__name__)

READER_FIELD = CONNECTION_FIELDS["reader"]  # serve.database_url: the reader's login


def _user(request: Request) -> Any:
    """The signed-in Airflow user of this request (set by _signed_in)."""
    return request.state.precast_user


async def _signed_in(request: Request) -> None:
    """Airflow's own check of the caller's JWT, from the Bearer header or the UI's cookie
    (401 without one, 401/403 for a bad one); imported here, so that importing this module
    needs no api-server."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi.security import HTTPAuthorizationCredentials

    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    bearer = (HTTPAuthorizationCredentials(scheme=scheme, credentials=token)
              if scheme.lower() == "bearer" and token else None)
    request.state.precast_user = await get_user(request, None, bearer)


app = FastAPI(title="precast", docs_url=None, redoc_url=None, openapi_url=None,
              dependencies=[Depends(_signed_in)])


@app.exception_handler(HTTPException)
async def _refused(request: Request, exc: HTTPException) -> Response:
    root = _root(request)
    text = str(exc.detail)
    if exc.status_code == 401:
        text += ": sign in to Airflow first"
    return HTMLResponse(pages.message(root, f"{exc.status_code}", text), exc.status_code)


def _root(request: Request) -> str:
    """Where Airflow mounted the view (its links start there)."""
    return str(request.scope.get("root_path", "")) or MOUNT


def _reader_overrides(uc: UseCase) -> dict[str, str]:
    """serve.database_url from the use case's reader connection, when Airflow has it."""
    from airflow.models.connection import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from precast.orchestration.connections import connection_value

    conn_id = uc.connections.get(READER_FIELD)
    if not conn_id:
        return {}
    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return {}
    return {READER_FIELD: connection_value(READER_FIELD, conn)}


def _configured() -> list[UseCase]:
    """The deployment's use cases; a config that cannot be read is a 500 that names it."""
    try:
        return use_cases()
    except Exception as exc:
        raise HTTPException(500, f"the use cases' configs cannot be read: {exc}") from exc


def _visible(user: Any, configured: list[UseCase]) -> list[UseCase]:
    """The use cases `user` may read (read on its predict DAG's runs)."""
    return [uc for uc in configured if runs.allowed(user, uc.dag_id("predict"))]


def _find(user: Any, name: str, configured: list[UseCase]) -> tuple[UseCase, Config]:
    """Use case `name` and its config (with the reader's login), if `user` may read it."""
    found = next((uc for uc in configured if uc.name == name), None)
    if found is None:
        raise HTTPException(404, f"no use case {name!r} in this deployment")
    if not runs.allowed(user, found.dag_id("predict")):
        raise HTTPException(403, f"you may not read use case {name}'s DAGs")
    return found, found.load(_reader_overrides(found))


def _store(cfg: Config, detail: bool) -> tuple[status.StoreView | None, str | None]:
    try:
        return status.read_store(cfg, status.reader_url(cfg), detail=detail), None
    except status.ReaderMissingError as exc:
        return None, str(exc)
    except Exception as exc:  # an unreachable store is shown, not a 500
        log.warning("precast view: store of %s unreadable: %s", cfg.name, exc)
        return None, f"store unreadable: {type(exc).__name__}: {str(exc).splitlines()[0]}"


def csrf_token(user: Any, name: str) -> str:
    """The token a form of use case `name` carries for `user` (HMAC with Airflow's secret)."""
    from airflow.configuration import conf

    key = (conf.get("api", "secret_key", fallback="") or "precast").encode()
    return hmac.new(key, f"{user.get_name()}:{name}".encode(), hashlib.sha256).hexdigest()


@app.get("/", response_class=HTMLResponse)
def overview(request: Request) -> str:
    user, now = _user(request), datetime.now(UTC)
    rows = []
    for uc in _visible(user, _configured()):
        cfg = uc.load(_reader_overrides(uc))
        view, problem = _store(cfg, detail=False)
        stale, fresh = pages.freshness(view.served if view else None,
                                       uc.schedules["predict"], now)
        rows.append(pages.UseCaseRow(uc.name, view, problem, runs.last_runs(uc), stale, fresh))
    return pages.overview(_root(request), rows, now)


@app.get("/uc/{name}", response_class=HTMLResponse)
def use_case(request: Request, name: str) -> str:
    user, now, configured = _user(request), datetime.now(UTC), _configured()
    uc, cfg = _find(user, name, configured)
    view, problem = _store(cfg, detail=True)
    if view is None:
        return pages.message(_root(request), name, problem or "?")
    stale, fresh = pages.freshness(view.served, uc.schedules["predict"], now)
    page = pages.UseCasePage(
        name, view, runs.last_runs(uc), status.reports(cfg), status.validations(cfg), stale,
        fresh, csrf_token(user, name),
        runs.allowed(user, uc.dag_id("rollback"), act=True),
        [u.name for u in _visible(user, configured)], _root(request))
    return pages.use_case(page, now)


@app.get("/uc/{name}/report/{kind}/{run_date}/{file}", response_class=HTMLResponse)
def report(request: Request, name: str, kind: str, run_date: str, file: str) -> str:
    _, cfg = _find(_user(request), name, _configured())
    path = status.report_file(cfg, kind, run_date, file)
    if path is None:
        raise HTTPException(404, f"no {kind} report {run_date}/{file} for {name}")
    return path.read_text(encoding="utf-8")


@app.get("/uc/{name}/runs/{dag_id}/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, name: str, dag_id: str, run_id: str) -> str:
    user, configured = _user(request), _configured()
    uc, _ = _find(user, name, configured)
    if dag_id not in {uc.dag_id(role) for role in runs.ROLES}:
        raise HTTPException(404, f"{dag_id} is not a DAG of {name}")
    found = runs.run(dag_id, run_id)
    if found is None:
        raise HTTPException(404, f"no run {run_id} of {dag_id}")
    return pages.run_page(_root(request), name, found,
                          [u.name for u in _visible(user, configured)])


async def _form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0].strip() for k, v in parse_qs(body, keep_blank_values=True).items()}


def _start(request: Request, name: str, role: str, form: dict[str, str],
           conf_of: Any) -> Response:
    """Check the form (token, reason, what it names), then start the `role` DAG's run as
    the user and show it. What the form may name comes from the store, read now."""
    user = _user(request)
    uc, cfg = _find(user, name, _configured())
    dag_id = uc.dag_id(role)
    if not runs.allowed(user, dag_id, act=True):
        raise HTTPException(403, f"you may not start runs of {dag_id}")
    if not hmac.compare_digest(form.get("csrf", ""), csrf_token(user, name)):
        raise HTTPException(403, "the form's token does not match: reload the page")
    if len(form.get("reason", "")) < 3:
        raise HTTPException(400, "a reason is required (at least 3 characters); it is recorded")
    view, problem = _store(cfg, detail=False)
    if view is None:
        raise HTTPException(503, problem or "store unreadable")
    conf = conf_of(view, form)
    started = runs.trigger(dag_id, conf, user.get_name())
    log.info("precast view: %s started %s %s with %s", user.get_name(), dag_id,
             started.run_id, conf)
    return RedirectResponse(f"{_root(request)}/uc/{quote(name)}/runs/{quote(dag_id)}/"
                            f"{quote(started.run_id, safe='')}", status_code=303)


@app.post("/uc/{name}/rollback")
async def rollback(request: Request, name: str) -> Response:
    form = await _form(request)

    def conf_of(view: status.StoreView, form: dict[str, str]) -> dict[str, str]:
        target = form.get("target", "")
        offered = pages.rollback_targets(view)
        if target not in offered:
            raise HTTPException(400, f"cannot roll back to {target!r}: the retained snapshots "
                                     f"offer {', '.join(offered) or 'nothing'}")
        return {"target": target, "reason": form["reason"]}

    return _start(request, name, "rollback", form, conf_of)


@app.post("/uc/{name}/promote")
async def promote(request: Request, name: str) -> Response:
    form = await _form(request)

    def conf_of(view: status.StoreView, form: dict[str, str]) -> dict[str, Any]:
        action = form.get("action", "")
        if action not in ("force", "pin", "unpin"):
            raise HTTPException(400, f"unknown action {action!r}: force, pin or unpin")
        version = form.get("version") or None
        if action == "force" and not version:
            raise HTTPException(400, "promote needs the version (one of the champions listed)")
        if action == "force" and version not in {p.model_version for p in view.history}:
            raise HTTPException(400, f"v{version} was never a champion of {name}; promote a "
                                     "challenger with the DAG's form")
        return {"action": action, "version": version, "reason": form["reason"]}

    return _start(request, name, "promote", form, conf_of)
