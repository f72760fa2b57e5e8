"""The lookup HTTP API (`precast serve`): FastAPI on uvicorn over `predictions_current`.

    precast serve --port 8000
    curl http://127.0.0.1:8000/v1/predictions/u000001
    curl -X POST http://127.0.0.1:8000/v1/predictions:batchGet -d '{"ids": ["u1", "u2"]}'
    curl http://127.0.0.1:8000/healthz

Every answer names the snapshot it came from; an entity with no prediction gets the fallback
score (`serve.fallback_score`, else the training mean of the label of the model that scored
the snapshot: its label rate for binary, its mean label for regression) with
`"fallback": true`.
Bad input is a 4xx, an unpublished store or an unreachable database a 503, always as
`{"error": {"code": ..., "message": ...}}`.

With API keys configured (serve.api_keys, PRECAST_API_KEYS; see precast.serving.access) every
lookup needs one (`Authorization: Bearer <key>` or `X-API-Key`), else 401; past its rate
limit a key gets 429 with Retry-After. /healthz stays open (load balancers probe it; it
names the served snapshot, never a key, a host or an error's text). Each answered lookup is
counted per key, model version and snapshot (precast.serving.usage) and the counts are merged into
`<space>/serve/usage/<day>.json` every serve.usage_flush_s and at shutdown. `precast serve`
refuses a non-loopback host without keys unless serve.allow_open is true, and refuses to
start when the store rejects its login (one line, password redacted).

One :class:`~precast.serving.lookup.AsyncLookupClient` per process reads `cfg.serve_url` (a
read-only role's URL in production; PostgreSQL sessions are opened read-only, with a
statement timeout, in any case) through a connection pool, without a thread hop on
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

import psycopg
import sqlalchemy as sa
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import precast
from precast.config import Config, ConfigError, load_config, redact_text
from precast.runtime import configure_logging
from precast.serving.access import Caller, KeyRing, RequestRefused
from precast.serving.lookup import (
    AsyncLookupClient,
    Lookup,
    NoSnapshotError,
    SessionLimits,
    login_problem,
)
from precast.serving.usage import Meter

__all__ = ["ApiError", "create_app", "app_from_environment", "preflight", "run"]

log = logging.getLogger(__name__)

CONFIG_JSON_ENV = "PRECAST_CONFIG_JSON"  # the validated config, for worker processes
DB_TIMEOUT_S = 3.0  # a lookup or health check waiting longer on the database answers 503
NO_SNAPSHOT = "no prediction snapshot has been published yet"
STORE_UNREACHABLE = "store unreachable"  # all /healthz says of a database failure
DB_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.Error, sa.exc.SQLAlchemyError, sqlite3.Error, TimeoutError, OSError)
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


class ApiError(RequestRefused):
    """A request the API refuses: HTTP status, a stable code and a message for the caller."""


def error_response(status: int, code: str, message: str,
                   headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The one error shape: {"error": {"code": ..., "message": ...}}."""
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers)


def prediction(hit: Lookup) -> dict[str, Any]:
    """One prediction as JSON (ISO dates; scored_at is null for a fallback)."""
    return {"entity_id": hit.entity_id, "score": hit.score, "fallback": hit.fallback,
            "model_name": hit.model_name, "model_version": hit.model_version,
            "snapshot_id": hit.snapshot_id,
            "snapshot_date": hit.snapshot_date.isoformat() if hit.snapshot_date else None,
            "scored_at": hit.scored_at.isoformat() if hit.scored_at else None}


def id_problem(entity_id: str) -> str | None:
    """Why `entity_id` cannot be looked up (empty, blank, NUL, a lone surrogate), or None
    when it can."""
    if not entity_id.strip():
        return "is empty" if not entity_id else "is only whitespace"
    if "\x00" in entity_id:
        return "contains a NUL character"
    if not entity_id.isascii():
        try:
            entity_id.encode()
        except UnicodeEncodeError as exc:
            return (f"contains a lone surrogate (U+{ord(entity_id[exc.start]):04X} at "
                    f"character {exc.start}), which is no Unicode text")
    return None


def path_problem(request: Request, entity_id: str) -> str | None:
    """id_problem of a path's entity_id, and "is not valid UTF-8" for escapes that decode
    to no text (the server put U+FFFD in their place)."""
    if "\ufffd" in entity_id:
        try:
            unquote_to_bytes(request.scope.get("raw_path") or b"").decode()
        except UnicodeDecodeError:
            return "is not valid UTF-8 once its %-escapes are decoded"
    return id_problem(entity_id)


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def parse_ids(body: bytes, max_ids: int) -> list[str]:
    """The ids of a batchGet body `{"ids": [...]}`; ApiError(400) says what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else "nested too deeply"
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", 'request body must be a JSON object like '
                       f'{{"ids": ["u1", "u2"]}}; got {_json_type(data)}')
    unknown = sorted(set(data) - {"ids"})
    if unknown:
        raise ApiError(400, "invalid_request", f"unknown field(s) {', '.join(unknown)}; "
                       'the body takes only "ids"')
    if "ids" not in data:
        raise ApiError(400, "invalid_request", 'missing field "ids"')
    return _checked_ids(data["ids"], max_ids)


def _checked_ids(ids: Any, max_ids: int) -> list[str]:
    """`ids` when it is a list of 1 to max_ids usable strings, else ApiError(400)."""
    expected = f"ids must be a list of 1 to {max_ids} non-empty strings"
    if not isinstance(ids, list):
        raise ApiError(400, "invalid_ids", f"{expected}; got {_json_type(ids)}")
    if not 1 <= len(ids) <= max_ids:
        raise ApiError(400, "invalid_ids", f"{expected}; got {len(ids)} ids")
    for position, value in enumerate(ids):
        if not isinstance(value, str):
            raise ApiError(400, "invalid_ids",
                           f"{expected}; ids[{position}] is {_json_type(value)}")
        problem = id_problem(value)
        if problem:
            raise ApiError(400, "invalid_ids", f"{expected}; ids[{position}] {problem}")
    return ids


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused with 413 past `max_bytes` (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise ApiError(413, "body_too_large", f"request body is {declared} bytes; "
                       f"the limit is {max_bytes} bytes (split the ids over several requests)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "body_too_large", f"request body is over the limit of "
                           f"{max_bytes} bytes (split the ids over several requests)")
        chunks.append(chunk)
    return b"".join(chunks)


def session_limits(cfg: Config) -> SessionLimits:
    """The bounds of the API's database sessions (serve.*_timeout_*, keepalives_idle_s)."""
    serve = cfg.serve
    return SessionLimits(serve.statement_timeout_ms, serve.connect_timeout_s,
                         serve.keepalives_idle_s, serve.busy_timeout_ms)


class LookupApi:
    """The endpoints, bound to one lookup client, the keys, the meter and the settings."""

    def __init__(self, cfg: Config, keys: KeyRing) -> None:
        self.settings = cfg.serve
        self.timeout = DB_TIMEOUT_S
        self.keys = keys
        self.meter = Meter(cfg.space / "serve" / "usage") if cfg.serve.metering else None
        self.client = AsyncLookupClient(cfg.serve_url,
                                        fallback_score=cfg.serve.fallback_score,
                                        pool_size=cfg.serve.pool_size,
                                        concurrency=cfg.serve.query_concurrency,
                                        limits=session_limits(cfg))

    async def get_prediction(self, request: Request) -> Response:
        """GET /v1/predictions/{entity_id}: one prediction, or the fallback."""
        caller: Caller = self.keys.admit(request.headers)
        entity_id: str = request.path_params["entity_id"]
        problem = path_problem(request, entity_id)
        if problem:
            return error_response(400, "invalid_entity_id", f"entity_id {problem}")
        async with asyncio.timeout(self.timeout):
            hit = await self.client.get_one(entity_id)
        if self.meter is not None:
            self.meter.count(caller.name, "get", hit.model_name, hit.model_version,
                             hit.snapshot_id)
        return JSONResponse(prediction(hit))

    async def batch_get(self, request: Request) -> Response:
        """POST /v1/predictions:batchGet: predictions for {"ids": [...]}, in request order."""
        caller: Caller = self.keys.admit(request.headers)
        ids = parse_ids(await read_body(request, self.settings.max_body_bytes),
                        self.settings.max_batch_ids)
        async with asyncio.timeout(self.timeout):
            hits = await self.client.get(ids)
        if len(hits) != len(ids):  # the view exists but serves no snapshot row
            raise NoSnapshotError(NO_SNAPSHOT)
        first = hits[0]
        if self.meter is not None:
            self.meter.count(caller.name, "batchGet", first.model_name, first.model_version,
                             first.snapshot_id, len(ids))
        return JSONResponse({"snapshot_id": first.snapshot_id,
                             "predictions": [prediction(hit) for hit in hits]})

    async def flush_usage(self) -> None:
        """Merge the usage counted so far into the day files (in a thread); on failure the
        counts wait for the next flush."""
        if self.meter is None:
            return
        counts = self.meter.take()
        try:
            await asyncio.to_thread(self.meter.flush, counts)
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad file never stops serving
            self.meter.restore(counts)
            log.warning("usage not written to %s (kept for the next flush): %s",
                        self.meter.folder, exc)

    async def flush_usage_forever(self) -> None:
        """flush_usage every serve.usage_flush_s."""
        while True:
            await asyncio.sleep(self.settings.usage_flush_s)
            await self.flush_usage()

    async def healthz(self, _: Request) -> Response:
        """GET /healthz: 200 with the served snapshot and its age, else 503 with the reason."""
        try:
            async with asyncio.timeout(self.timeout):
                served = await self.client.current()
        except NoSnapshotError:
            return JSONResponse({"status": "unavailable", "reason": NO_SNAPSHOT}, 503)
        except DB_ERRORS as exc:  # the detail stays in the server's log
            log.warning("health check failed: %s", _describe(exc))
            return JSONResponse({"status": "unavailable", "reason": STORE_UNREACHABLE}, 503)
        age = datetime.now(UTC) - served.published_at
        return JSONResponse({
            "status": "ok", "snapshot_id": served.snapshot_id,
            "snapshot_date": served.snapshot_date.isoformat(),
            "model_name": served.model_name, "model_version": served.model_version,
            "row_count": served.row_count, "published_at": served.published_at.isoformat(),
            "activated_at": served.activated_at.isoformat() if served.activated_at else None,
            "age_seconds": round(age.total_seconds(), 3)})


def _describe(exc: BaseException) -> str:
    """One line about a database failure for the log (no stack trace, secrets redacted)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {DB_TIMEOUT_S:g} s"
    text = str(exc).strip().splitlines()
    return redact_text(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)


def _install_error_handlers(app: FastAPI) -> None:
    """Map every failure to the one JSON error shape (never an HTML page or a stack trace)."""

    async def api_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestRefused)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, message, exc.headers)

    async def no_snapshot(_: Request, exc: Exception) -> Response:
        return error_response(503, "no_snapshot", NO_SNAPSHOT, {"Retry-After": "60"})

    async def database(request: Request, exc: Exception) -> Response:
        log.warning("%s %s failed: %s", request.method, request.url.path, _describe(exc))
        return error_response(503, "database_unavailable",  # details stay in the log
                              "the prediction database is unavailable; retry shortly",
                              {"Retry-After": "5"})

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal error (logged by the server)")

    handlers: dict[Any, Callable[..., Any]] = {
        RequestRefused: api_error, StarletteHTTPException: http_error,
        NoSnapshotError: no_snapshot, Exception: internal}
    handlers.update(dict.fromkeys(DB_ERRORS, database))
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def create_app(cfg: Config, environ: Mapping[str, str] | None = None) -> FastAPI:
    """The API for `cfg` (keys also from `environ`'s PRECAST_API_KEYS, default os.environ);
    its lifespan opens and closes the one lookup client and flushes the usage counts."""
    api = LookupApi(cfg, KeyRing.of(cfg.serve, os.environ if environ is None else environ))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await api.client.open()
        flusher = asyncio.create_task(api.flush_usage_forever())
        log.info("serving predictions from %s",
                 sa.make_url(cfg.serve_url).render_as_string(hide_password=True))
        try:
            yield
        finally:
            flusher.cancel()
            with suppress(asyncio.CancelledError):
                await flusher
            await api.flush_usage()
            await api.client.close()

    app = FastAPI(title="precast lookup API", version=precast.__version__, lifespan=lifespan,
                  openapi_url=None, redirect_slashes=False)
    # Plain Starlette routes: FastAPI's per-request parameter solving cost about 3x the rest
    # of a lookup's CPU time (measured in-process), and these endpoints parse their own input.
    app.add_route("/v1/predictions/{entity_id:path}", api.get_prediction, methods=["GET"])
    app.add_route("/v1/predictions:batchGet", api.batch_get, methods=["POST"])
    app.add_route("/healthz", api.healthz, methods=["GET"])
    _install_error_handlers(app)
    return app


def app_from_environment() -> FastAPI:
    """The app for a uvicorn worker: config from PRECAST_CONFIG_JSON, else load_config()."""
    configure_logging(logging.WARNING)  # a spawned worker has no logging set up yet
    text = os.environ.get(CONFIG_JSON_ENV)
    return create_app(Config.model_validate_json(text) if text else load_config())


def _loopback(host: str) -> bool:
    """True for a bind address only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def preflight(cfg: Config, host: str) -> None:
    """ConfigError (one line) when `precast serve` must not start: a non-loopback `host`
    with no active API key (unless serve.allow_open), bad PRECAST_API_KEYS, or a store that
    refuses the API's login. A store that is down now is no reason: it is answered with 503s."""
    try:
        keys = KeyRing.of(cfg.serve, os.environ)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not keys.active and not cfg.serve.allow_open and not _loopback(host):
        raise ConfigError(f"refusing to serve on {host} without API keys: set serve.api_keys "
                          "or PRECAST_API_KEYS, or serve.allow_open: true for an open API")
    problem = login_problem(cfg.serve_url, session_limits(cfg))
    if problem:
        raise ConfigError(f"the prediction store {redact_text(cfg.serve_url)} refused the "
                          f"login: {redact_text(problem)}")


def run(cfg: Config, host: str | None = None, port: int | None = None) -> int:
    """Serve until interrupted (uvicorn, uvloop, httptools); the exit status."""
    import uvicorn

    options: dict[str, Any] = {
        "host": host or cfg.serve.host, "port": cfg.serve.port if port is None else port,
        "loop": "uvloop", "http": "httptools", "access_log": False, "log_level": "warning",
        "server_header": False, "timeout_graceful_shutdown": 10}
    log.info("precast serve on http://%s:%s (%s worker(s))", options["host"], options["port"],
             cfg.serve.workers)
    try:
        if cfg.serve.workers > 1:
            os.environ[CONFIG_JSON_ENV] = cfg.model_dump_json()
            uvicorn.run(f"{__name__}:app_from_environment", factory=True,
                        workers=cfg.serve.workers, **options)
        else:
            uvicorn.run(create_app(cfg), **options)
    except SystemExit as exc:  # uvicorn exits when it cannot bind or start (said in its log)
        return 0 if exc.code in (0, None) else 1
    return 0
