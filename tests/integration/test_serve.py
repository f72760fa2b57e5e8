"""The lookup HTTP API over real HTTP: `precast serve` subprocesses on SQLite and PostgreSQL.

On PostgreSQL the store is set up as in production (`store.setup`): snapshots are published
by a login in the writer role and the service logs in as a member of the read-only reader
role. Every service is stopped with SIGTERM and its log must hold no traceback.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pyarrow as pa
import pytest
import sqlalchemy as sa

from precast import store
from precast.serving.access import key_hash
from precast.serving.lookup import AsyncLookupClient, LookupClient, SessionLimits
from precast.store import SnapshotInfo, SnapshotMeta
from tests.helpers import pg_database

PREFIX = "precast_api_test"
PRECAST = Path(sys.executable).parent / "precast"
DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 30, 15, 123456, tzinfo=UTC)
ODD_ID = "team/7 ü"  # a slash, a space and non-ASCII: must survive URL encoding
LABEL_RATE = 0.12
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
IDS_RULE = "ids must be a list of 1 to 1000 non-empty strings"


@dataclass(frozen=True)
class Store:
    """A prediction store: the publisher's URL, the URL the API reads with, the admin's URL."""

    url: str
    reader: str
    admin: str
    policy: store.WritePolicy = store.WritePolicy()


@dataclass
class Service:
    """One running `precast serve` subprocess and an HTTP client for it."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=20)

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def batch(self, body: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.http.post("/v1/predictions:batchGet", content=content,
                              headers={"content-type": "application/json"})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as a supervisor would; the service must exit and never have crashed."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"precast serve ignored SIGTERM; its log:\n{self.log()}")
        assert "Traceback" not in self.log(), self.log()


@dataclass(frozen=True)
class Served:
    """A store with snapshot `info` published and a service with default settings on it."""

    store: Store
    service: Service
    info: SnapshotInfo
    root: Path
    backend: str


# ---------------------------------------------------------------- stores and services


def _batch(version: int) -> pa.RecordBatch:
    """u0000..u0099 scored i/100 + version/1000, and ODD_ID scored 0.77."""
    ids = [f"u{i:04d}" for i in range(100)] + [ODD_ID]
    scores = [i / 100 + version / 1000 for i in range(100)] + [0.77]
    return pa.RecordBatch.from_pydict({
        "entity_id": pa.array(ids, pa.string()),
        "score": pa.array(scores, pa.float64()),
        "scored_at": pa.array([SCORED_AT] * len(ids), pa.timestamp("us", tz="UTC")),
    })


def _publish(st: Store, version: int) -> SnapshotInfo:
    meta = SnapshotMeta(snapshot_date=DAY + timedelta(days=version - 1), model_name="churn",
                        model_version=str(version), data_version=f"data-{version}",
                        fallback_score=LABEL_RATE)
    return store.publish(st.url, [_batch(version)], meta, keep=3, policy=st.policy)


def _admin(url: str, *statements: str) -> list[Any]:
    """Run statements as the admin user in the database of `url`; the last one's rows."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            rows: list[Any] = []
            for statement in statements:
                result = conn.exec_driver_sql(statement)
                rows = list(result) if result.returns_rows else []
            return rows
    finally:
        engine.dispose()


@contextmanager
def _store(backend: str, root: Path) -> Iterator[Store]:
    """An empty store; on PostgreSQL set up with `store.setup` roles, as in production."""
    if backend == "sqlite":
        url = f"sqlite:///{root / 'predictions.db'}"
        yield Store(url, url, url)
        return
    with pg_database(PREFIX) as url:
        suffix = uuid.uuid4().hex[:8]
        reader, writer = f"{PREFIX}_reader_{suffix}", f"{PREFIX}_writer_{suffix}"
        app, job = f"{PREFIX}_app_{suffix}", f"{PREFIX}_job_{suffix}"
        roles = (app, job, writer, reader)  # dropped in this order
        try:
            store.setup(url, reader=reader, writer=writer)
            _admin(url, f'CREATE ROLE "{app}" LOGIN IN ROLE "{reader}"',
                   f'CREATE ROLE "{job}" LOGIN IN ROLE "{writer}"')
            login = sa.make_url(url)
            yield Store(login.set(username=job).render_as_string(hide_password=False),
                        login.set(username=app).render_as_string(hide_password=False),
                        url, store.WritePolicy(writer_role=writer))
        finally:  # roles are cluster-wide: leave none behind
            for role in roles:
                _drop_role(url, role)


def _drop_role(url: str, role: str) -> None:
    if _admin(url, f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"):
        _admin(url, f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(root: Path, st: Store, extra: dict[str, str] | None = None,
         **settings: Any) -> dict[str, str]:
    """The environment for `precast serve` on `st`: a config file of its own plus overrides
    (serve.* settings, and `extra` variables such as PRECAST_API_KEYS)."""
    config = root / "precast.yaml"
    # The store was set up in PostgreSQL's public schema (stores.schema; default: a schema
    # named after the use case).
    config.write_text("serve:\n  host: 127.0.0.1\nstores:\n  schema: public\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PRECAST_") or k.startswith("PRECAST_TEST_")}
    env.update(PRECAST_CONFIG=str(config), PRECAST_HOME=str(root / "home"),
               PRECAST_STORES__PREDICTIONS_URL=st.url, PRECAST_SERVE__DATABASE_URL=st.reader)
    env.update({f"PRECAST_SERVE__{k.upper()}": json.dumps(v) if isinstance(v, list) else str(v)
                for k, v in settings.items()})
    env.update(extra or {})
    return env


def _start(root: Path, st: Store, extra: dict[str, str] | None = None, *,
           args: tuple[str, ...] = (), **settings: Any) -> Service:
    """`precast serve --port P` on `st`, configured by environment; up once it answers HTTP.

    Readiness is polled on a path that needs no database (its 404 is immediate), so a service
    whose database is down is seen as up at once; /healthz is checked by the tests themselves.
    """
    port = _free_port()
    log_path = root / f"serve-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([str(PRECAST), "serve", "--port", str(port), *args], cwd=root,
                                env=_env(root, st, extra, **settings), stdout=out,
                                stderr=subprocess.STDOUT)
    service = Service(proc, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"precast serve exited with {proc.returncode}:\n{service.log()}")
        try:
            service.get("/ready")
            return service
        except httpx.TransportError:
            time.sleep(0.1)
    service.stop()
    pytest.fail(f"precast serve did not answer within 30 s:\n{service.log()}")


@contextmanager
def _serving(root: Path, st: Store, extra: dict[str, str] | None = None, *,
             args: tuple[str, ...] = (), **settings: Any) -> Iterator[Service]:
    service = _start(root, st, extra, args=args, **settings)
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Snapshot 1 published, and `precast serve` with default settings reading it."""
    root = tmp_path_factory.mktemp(f"serve-{request.param}")
    with _store(request.param, root) as st:
        info = _publish(st, 1)
        with _serving(root, st) as service:
            yield Served(st, service, info, root, request.param)


def _hit(info: SnapshotInfo, entity_id: str, score: float) -> dict[str, Any]:
    return {"entity_id": entity_id, "score": score, "fallback": False, "model_name": "churn",
            "model_version": info.model_version, "snapshot_id": info.snapshot_id,
            "snapshot_date": info.snapshot_date.isoformat(), "scored_at": SCORED_AT.isoformat()}


def _fallback(info: SnapshotInfo, entity_id: str, score: float) -> dict[str, Any]:
    return {**_hit(info, entity_id, score), "fallback": True, "scored_at": None}


def _error(response: httpx.Response) -> tuple[int, str, str]:
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and sorted(body["error"]) == ["code", "message"], body
    return response.status_code, body["error"]["code"], body["error"]["message"]


# ---------------------------------------------------------------- answers


def test_get_answers_hits_and_flags_misses_with_the_label_rate(served: Served) -> None:
    info, service = served.info, served.service
    hit = service.get("/v1/predictions/u0042")
    assert (hit.status_code, hit.headers["content-type"]) == (200, "application/json")
    assert hit.json() == _hit(info, "u0042", 42 / 100 + 1 / 1000)
    odd = service.get("/v1/predictions/" + quote(ODD_ID, safe=""))
    assert odd.json() == _hit(info, ODD_ID, 0.77)
    miss = service.get("/v1/predictions/nobody")
    assert miss.status_code == 200
    assert miss.json() == _fallback(info, "nobody", LABEL_RATE)


def test_batch_get_answers_in_request_order_with_duplicates_and_misses(served: Served) -> None:
    info, service = served.info, served.service
    answer = service.batch({"ids": ["u0003", "nobody", "u0001", "u0003", ODD_ID]})
    assert answer.status_code == 200
    assert answer.json() == {"snapshot_id": info.snapshot_id, "predictions": [
        _hit(info, "u0003", 0.031), _fallback(info, "nobody", LABEL_RATE),
        _hit(info, "u0001", 0.011), _hit(info, "u0003", 0.031), _hit(info, ODD_ID, 0.77)]}
    ids = [f"u{i % 150:04d}" for i in range(1000)]  # the maximum, half of them misses
    full = service.batch({"ids": ids}).json()["predictions"]
    assert [p["entity_id"] for p in full] == ids
    assert [p["fallback"] for p in full] == [i % 150 >= 100 for i in range(1000)]


def test_healthz_reports_the_served_snapshot_and_its_age(served: Served) -> None:
    info = served.info
    response = served.service.get("/healthz")
    now = datetime.now(UTC)
    assert response.status_code == 200
    body = response.json()
    age = body.pop("age_seconds")
    assert body == {"status": "ok", "snapshot_id": info.snapshot_id,
                    "snapshot_date": DAY.isoformat(), "model_name": "churn",
                    "model_version": "1", "row_count": 101,
                    "published_at": info.published_at.isoformat(),
                    "activated_at": info.activated_at.isoformat()}
    expected = (now - info.published_at).total_seconds()
    assert 0 <= age <= expected + 0.01 and age >= expected - 5


# ---------------------------------------------------------------- bad input


BAD_BODIES = [
    (b"", "invalid_json", "request body is not valid JSON: Expecting value"),
    (b"ids=u1", "invalid_json", "request body is not valid JSON: Expecting value"),
    (b"[" * 100_000, "invalid_json", "request body is not valid JSON: nested too deeply"),
    (b'{"ids": ["\xff"]}', "invalid_json", "request body is not valid JSON: 'utf-8' codec"),
    (b'["u1"]', "invalid_request",
     'request body must be a JSON object like {"ids": ["u1", "u2"]}; got an array'),
    (b"{}", "invalid_request", 'missing field "ids"'),
    (b'{"ids": ["u1"], "idz": 1}', "invalid_request",
     'unknown field(s) idz; the body takes only "ids"'),
    (b'{"ids": "u1"}', "invalid_ids", f"{IDS_RULE}; got a string"),
    (b'{"ids": {"u1": 1}}', "invalid_ids", f"{IDS_RULE}; got an object"),
    (b'{"ids": []}', "invalid_ids", f"{IDS_RULE}; got 0 ids"),
    (json.dumps({"ids": ["u1"] * 1001}).encode(), "invalid_ids", f"{IDS_RULE}; got 1001 ids"),
    (b'{"ids": ["u1", 7]}', "invalid_ids", f"{IDS_RULE}; ids[1] is a number"),
    (b'{"ids": [true]}', "invalid_ids", f"{IDS_RULE}; ids[0] is a boolean"),
    (b'{"ids": [null]}', "invalid_ids", f"{IDS_RULE}; ids[0] is null"),
    (b'{"ids": [["u1"]]}', "invalid_ids", f"{IDS_RULE}; ids[0] is an array"),
    (b'{"ids": ["u1", ""]}', "invalid_ids", f"{IDS_RULE}; ids[1] is empty"),
    (b'{"ids": [" \\t"]}', "invalid_ids", f"{IDS_RULE}; ids[0] is only whitespace"),
    (b'{"ids": ["a\\u0000b"]}', "invalid_ids", f"{IDS_RULE}; ids[0] contains a NUL character"),
]


@pytest.mark.parametrize(("body", "code", "message"), BAD_BODIES,
                         ids=[f"{i:02d}-{c}" for i, (_, c, _m) in enumerate(BAD_BODIES)])
def test_bad_batch_bodies_get_400_saying_what_is_wrong(
        served: Served, body: bytes, code: str, message: str) -> None:
    status, got_code, got_message = _error(served.service.batch(body))
    assert (status, got_code) == (400, code)
    assert got_message.startswith(message), got_message


@pytest.mark.parametrize(("path", "message"), [
    ("/v1/predictions/", "entity_id is empty"),
    ("/v1/predictions/%20%09", "entity_id is only whitespace"),
    ("/v1/predictions/a%00b", "entity_id contains a NUL character"),
])
def test_unusable_entity_ids_get_400(served: Served, path: str, message: str) -> None:
    assert _error(served.service.get(path)) == (400, "invalid_entity_id", message)


def test_unknown_routes_and_methods_get_json_404_and_405(served: Served) -> None:
    http = served.service.http
    for path in ("/v1/nope", "/v1/predictions", "/healthz/"):
        assert _error(http.get(path)) == (404, "not_found", f"no such endpoint: GET {path}")
    wrong = http.post("/v1/predictions/u0001")
    assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD"}
    assert _error(wrong) == (405, "method_not_allowed",
                             "POST is not allowed on /v1/predictions/u0001")
    wrong = http.get("/v1/predictions:batchGet")
    assert wrong.headers["allow"] == "POST"
    assert _error(wrong)[:2] == (405, "method_not_allowed")


def test_oversized_bodies_get_413_declared_or_streamed(served: Served) -> None:
    # Declared: refused from the Content-Length header, before the body is read.
    conn = http.client.HTTPConnection("127.0.0.1", served.service.port, timeout=20)
    conn.putrequest("POST", "/v1/predictions:batchGet")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", "10000000")
    conn.endheaders()
    conn.send(b'{"ids": ["u1"')
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    assert (response.status, body["error"]["code"]) == (413, "body_too_large")
    assert body["error"]["message"] == ("request body is 10000000 bytes; the limit is 262144 "
                                        "bytes (split the ids over several requests)")
    # Streamed: no Content-Length (chunked), refused once the bytes read pass the limit.
    chunk = json.dumps(["x" * 16_000]).encode()
    streamed = served.service.http.post(
        "/v1/predictions:batchGet", content=iter([b'{"ids": '] + [chunk] * 20 + [b"}"]))
    assert "content-length" not in streamed.request.headers
    assert _error(streamed) == (413, "body_too_large", "request body is over the limit of "
                                "262144 bytes (split the ids over several requests)")
    # Within the id count but over the byte limit: 413, not a 400 about ids.
    long_ids = served.service.batch({"ids": ["y" * 300] * 1000})
    assert _error(long_ids)[:2] == (413, "body_too_large")
    assert served.service.get("/v1/predictions/u0001").status_code == 200  # still serving


def test_configured_fallback_limits_and_workers(served: Served) -> None:
    workers = 2 if served.backend == "sqlite" else 1  # the worker path is the same on both
    with _serving(served.root, served.store, fallback_score=0.5, max_batch_ids=3,
                  max_body_bytes=1024, workers=workers) as service:
        assert service.get("/v1/predictions/nobody").json() == _fallback(
            served.info, "nobody", 0.5)
        answer = service.batch({"ids": ["u0001", "nobody"]}).json()
        assert answer["predictions"] == [_hit(served.info, "u0001", 0.011),
                                         _fallback(served.info, "nobody", 0.5)]
        assert _error(service.batch({"ids": ["u1"] * 4})) == (
            400, "invalid_ids", "ids must be a list of 1 to 3 non-empty strings; got 4 ids")
        big = service.batch({"ids": ["z" * 600, "z" * 600]})
        assert _error(big)[:2] == (413, "body_too_large")
        assert "the limit is 1024 bytes" in _error(big)[2]
        assert service.get("/healthz").json()["status"] == "ok"


# ---------------------------------------------------------------- lifecycle and failures


def _wait_for(check: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpublished_then_publish_while_serving(backend: str, tmp_path: Path) -> None:
    with _store(backend, tmp_path) as st, _serving(tmp_path, st) as service:
        unpublished = (503, "no_snapshot", "no prediction snapshot has been published yet")
        assert _error(service.get("/v1/predictions/u0001")) == unpublished
        assert _error(service.batch({"ids": ["u0001"]})) == unpublished
        health = service.get("/healthz")
        assert (health.status_code, health.json()) == (503, {
            "status": "unavailable", "reason": "no prediction snapshot has been published yet"})
        first = _publish(st, 1)
        assert service.get("/v1/predictions/u0002").json() == _hit(first, "u0002", 0.021)
        second = _publish(st, 2)
        assert second.snapshot_id != first.snapshot_id
        assert service.get("/v1/predictions/u0002").json() == _hit(second, "u0002", 0.022)
        assert service.batch({"ids": ["nobody"]}).json() == {
            "snapshot_id": second.snapshot_id,
            "predictions": [_fallback(second, "nobody", LABEL_RATE)]}
        assert service.get("/healthz").json()["snapshot_id"] == second.snapshot_id
        if backend == "postgresql":
            _survives_dropped_connections(st, service)


def _survives_dropped_connections(st: Store, service: Service) -> None:
    """Server-side termination of the API's idle sessions: the next calls of every kind are
    answered on checked connections (the dead ones are retried once, never shown)."""
    sessions = _sessions_of(st)
    assert _admin(st.admin, f"SELECT count(*) {sessions}")[0][0] >= 1
    _admin(st.admin, f"SELECT pg_terminate_backend(pid) {sessions}")
    _wait_for(lambda: _admin(st.admin, f"SELECT count(*) {sessions}")[0][0] == 0)
    assert service.get("/v1/predictions/u0002").status_code == 200
    _admin(st.admin, f"SELECT pg_terminate_backend(pid) {sessions}")
    assert service.batch({"ids": ["u0002"]}).status_code == 200
    _admin(st.admin, f"SELECT pg_terminate_backend(pid) {sessions}")
    assert service.get("/healthz").status_code == 200


def _sessions_of(st: Store) -> str:
    """The FROM/WHERE of the API's sessions in pg_stat_activity (its reader login)."""
    return f"FROM pg_stat_activity WHERE usename = '{sa.make_url(st.reader).username}'"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_unreachable_database_gets_503_never_500(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":  # a directory is no database file
        url = f"sqlite:///{tmp_path}"
    else:  # nothing listens there; needs no PostgreSQL server
        url = f"postgresql+psycopg://precast:hunter2@127.0.0.1:{_free_port()}/precast"
    with _serving(tmp_path, Store(url, url, url)) as service, ThreadPoolExecutor(3) as pool:
        health, one, many = pool.map(lambda call: call(), [
            lambda: service.get("/healthz"), lambda: service.get("/v1/predictions/u1"),
            lambda: service.batch({"ids": ["u1"]})])
        # No driver text, host or password in the answer; the detail is in the log only.
        assert (health.status_code, health.json()) == (
            503, {"status": "unavailable", "reason": "store unreachable"})
        assert "health check failed: " in service.log()
        assert "hunter2" not in service.log()
        for response in (one, many):
            assert _error(response) == (503, "database_unavailable",
                                        "the prediction database is unavailable; retry shortly")
            assert response.headers["retry-after"] == "5"


def test_a_taken_port_exits_1_with_the_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(PRECAST), "serve", "--port", str(port)], cwd=tmp_path,
                                env=_env(tmp_path, Store(url, url, url)), capture_output=True,
                                text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "address already in use" in result.stderr


@pytest.mark.postgres
def test_lookup_sessions_are_read_only() -> None:
    """Whatever role the API logs in as, its sessions cannot write."""
    with pg_database(PREFIX) as url, LookupClient(url) as client:
        conn = client._cursor().connection
        assert conn.execute("SHOW application_name").fetchone() == ("precast-lookup",)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE written_by_the_api (a int)")


# ---------------------------------------------------------------- keys, limits and metering


ALICE, BOB, CAROL = "pk_alice_secret", "pk_bob_secret", "pk_carol_secret"


def _keys(**alice: Any) -> list[dict[str, Any]]:
    """serve.api_keys: alice (hash in the config, `alice` overrides), bob revoked."""
    return [{"name": "alice", "sha256": key_hash(ALICE), **alice},
            {"name": "bob", "sha256": key_hash(BOB), "revoked": True}]


def _as(service: Service, key: str | None, path: str = "/v1/predictions/u0001",
        header: str = "x-api-key") -> httpx.Response:
    if key is None:
        return service.http.get(path)
    value = f"Bearer {key}" if header == "authorization" else key
    return service.http.get(path, headers={header: value})


def test_api_keys_are_required_by_header_and_revocable(served: Served) -> None:
    # Raw keys, hashed at start; bob's, revoked in the config, stays revoked.
    extra = {"PRECAST_API_KEYS": f"carol={CAROL}, bob={BOB}"}
    with _serving(served.root, served.store, extra, api_keys=_keys()) as service:
        assert _as(service, ALICE).json() == _hit(served.info, "u0001", 0.011)
        assert _as(service, ALICE, header="authorization").status_code == 200
        assert _as(service, CAROL).status_code == 200
        ok = service.http.post("/v1/predictions:batchGet", content=b'{"ids": ["u0001"]}',
                               headers={"authorization": f"bearer {CAROL}"})
        assert ok.status_code == 200
        missing = _as(service, None)
        assert _error(missing) == (401, "missing_api_key", "an API key is required: send "
                                   "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        assert missing.headers["www-authenticate"] == "Bearer"
        assert _error(_as(service, "pk_guess")) == (
            401, "invalid_api_key", "the API key is not valid")
        basic = service.http.get("/v1/predictions/u1", headers={"authorization": f"Basic {ALICE}"})
        assert _error(basic)[:2] == (401, "missing_api_key")
        assert _error(_as(service, BOB)) == (401, "revoked_api_key",
                                             "the API key of bob is revoked")
        assert _error(service.batch({"ids": ["u0001"]}))[:2] == (401, "missing_api_key")
        assert service.get("/healthz").json()["status"] == "ok"  # open, for probes
    assert ALICE not in service.log() and CAROL not in service.log()


def test_precast_api_key_prints_a_new_key_once_and_the_entry_with_its_hash(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    made = [subprocess.run([str(PRECAST), "api-key", "billing-app"], cwd=tmp_path,
                           env=_env(tmp_path, Store(url, url, url)), capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    keys = [result.stdout.splitlines()[1].strip() for result in made]
    assert keys[0] != keys[1] and all(key.startswith("pk_") for key in keys)
    assert made[0].stdout.splitlines()[-1] == (
        f"    - {{name: billing-app, sha256: {key_hash(keys[0])}}}")


def test_rate_limits_per_key_answer_429_with_retry_after(served: Served) -> None:
    extra = {"PRECAST_API_KEYS": f"carol={CAROL}"}
    with _serving(served.root, served.store, extra, api_keys=_keys(rate_limit_per_s=1000),
                  rate_limit_per_s=0.5, rate_burst=2) as service:
        assert [_as(service, CAROL).status_code for _ in range(2)] == [200, 200]
        limited = _as(service, CAROL)
        assert _error(limited) == (429, "rate_limited", "rate limit of 0.5 requests/s for key "
                                   "carol exceeded; retry in 2 s")
        assert limited.headers["retry-after"] == "2"
        assert [_as(service, ALICE).status_code for _ in range(20)] == [200] * 20  # its own
        time.sleep(2.1)
        assert _as(service, CAROL).status_code == 200


def _usage(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = root / "home" / "precast" / "serve" / "usage" / f"{datetime.now(UTC).date()}.json"
    return path, json.loads(path.read_text())["rows"] if path.exists() else []


def test_usage_is_counted_per_key_and_snapshot_and_flushed_atomically(
        served: Served, tmp_path: Path) -> None:
    root, info = tmp_path, served.info  # a home of its own: usage files start empty
    extra = {"PRECAST_API_KEYS": f"carol={CAROL}"}
    row = {"model_name": "churn", "model_version": "1", "snapshot_id": info.snapshot_id}
    with _serving(root, served.store, extra, api_keys=_keys(), usage_flush_s=0.2) as service:
        for _ in range(3):
            _as(service, ALICE)
        service.http.post("/v1/predictions:batchGet", content=b'{"ids": ["u0001", "x"]}',
                          headers={"x-api-key": ALICE})
        _as(service, CAROL)
        _as(service, BOB)  # refused: not counted
        _wait_for(lambda: len(_usage(root)[1]) == 3)  # flushed while serving
    with _serving(root, served.store, extra, api_keys=_keys(), usage_flush_s=3600) as service:
        _as(service, CAROL)  # flushed at shutdown, merged into the same day file
    path, rows = _usage(root)
    assert rows == [
        {"key": "alice", "endpoint": "batchGet", **row, "requests": 1, "ids": 2},
        {"key": "alice", "endpoint": "get", **row, "requests": 3, "ids": 3},
        {"key": "carol", "endpoint": "get", **row, "requests": 2, "ids": 2}]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir() if p.suffix == ".tmp"] == []
    shown = subprocess.run([str(PRECAST), "usage"], cwd=root, env=_env(root, served.store),
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "alice                batchGet  churn v1" in shown.stdout


def test_workers_merge_their_usage_into_one_day_file(served: Served, tmp_path: Path) -> None:
    if served.backend == "postgresql":
        pytest.skip("the worker path is the same on both backends")
    with _serving(tmp_path, served.store, workers=2) as service:
        for _ in range(40):  # new connections: spread over both workers
            assert httpx.get(f"http://127.0.0.1:{service.port}/v1/predictions/u0001",
                             timeout=20).status_code == 200
    assert [(r["key"], r["requests"]) for r in _usage(tmp_path)[1]] == [("anonymous", 40)]


def test_open_api_is_metered_as_anonymous_unless_metering_is_off(
        served: Served, tmp_path: Path) -> None:
    with _serving(tmp_path, served.store) as service:
        assert _as(service, None).status_code == 200
    with _serving(tmp_path, served.store, metering="false") as service:
        assert _as(service, None).status_code == 200
    assert [(r["key"], r["requests"]) for r in _usage(tmp_path)[1]] == [("anonymous", 1)]


def _serve_once(root: Path, st: Store, *args: str,
                **settings: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PRECAST), "serve", "--port", str(_free_port()), *args],
                          cwd=root, env=_env(root, st, **settings), capture_output=True,
                          text=True, timeout=60)


def test_a_non_loopback_host_needs_keys_or_allow_open(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    st = Store(url, url, url)
    refused = _serve_once(tmp_path, st, "--host", "0.0.0.0")
    assert refused.returncode == 2
    assert refused.stderr == ("precast: refusing to serve on 0.0.0.0 without API keys: set "
                              "serve.api_keys or PRECAST_API_KEYS, or serve.allow_open: true "
                              "for an open API\n")
    revoked_only = _serve_once(tmp_path, st, "--host", "0.0.0.0",
                               api_keys=_keys()[1:])
    assert revoked_only.returncode == 2
    with _serving(tmp_path, st, args=("--host", "0.0.0.0"), allow_open="true") as service:
        assert service.get("/healthz").status_code == 503  # serving: nothing published
    with _serving(tmp_path, st, args=("--host", "0.0.0.0"), api_keys=_keys()) as service:
        assert _error(service.get("/v1/predictions/u1"))[:2] == (401, "missing_api_key")


# ---------------------------------------------------------------- faults


LONE_SURROGATE = (f"{IDS_RULE}; ids[0] contains a lone surrogate (U+D800 at character 0), "
                  "which is no Unicode text")


@pytest.mark.parametrize(("body", "message"), [
    (b'{"ids": ["\\ud800"]}', LONE_SURROGATE),
    (b'{"ids": ["u1", "a\\udfffb"]}',
     f"{IDS_RULE}; ids[1] contains a lone surrogate (U+DFFF at character 1), which is no "
     "Unicode text"),
])
def test_lone_surrogates_in_batch_ids_get_400(served: Served, body: bytes, message: str) -> None:
    assert _error(served.service.batch(body)) == (400, "invalid_ids", message)


@pytest.mark.parametrize("escaped", ["%ED%A0%80", "%FF", "a%C3", "%C3%28"])
def test_invalid_utf8_in_path_ids_gets_400(served: Served, escaped: str) -> None:
    assert _error(served.service.get(f"/v1/predictions/{escaped}")) == (
        400, "invalid_entity_id", "entity_id is not valid UTF-8 once its %-escapes are decoded")


def test_a_replacement_character_sent_as_text_is_an_ordinary_id(served: Served) -> None:
    answer = served.service.get("/v1/predictions/" + quote("a\ufffd", safe=""))
    assert answer.json() == _fallback(served.info, "a\ufffd", LABEL_RATE)


def test_sqlite_lookups_give_up_on_a_locked_store_after_the_busy_timeout(tmp_path: Path) -> None:
    with _store("sqlite", tmp_path) as st:
        _publish(st, 1)
        holder = sqlite3.connect(tmp_path / "predictions.db", isolation_level=None)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # held until closed, readers too
        holder.execute("BEGIN EXCLUSIVE")
        with _serving(tmp_path, st, busy_timeout_ms=300) as service:
            try:
                started = time.monotonic()
                locked = service.get("/v1/predictions/u0001")
                waited = time.monotonic() - started
            finally:
                holder.close()
            assert _error(locked)[:2] == (503, "database_unavailable")
            assert waited < 2, waited  # the busy timeout, not the 3 s request timeout
            assert service.get("/v1/predictions/u0001").status_code == 200


def test_a_silent_store_costs_the_connect_timeout_not_a_hang(tmp_path: Path) -> None:
    """A server that accepts TCP and never answers: start-up and /healthz stay bounded."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"postgresql+psycopg://precast:pw@127.0.0.1:{silent.getsockname()[1]}/precast"
        with _serving(tmp_path, Store(url, url, url), connect_timeout_s=1) as service:
            started = time.monotonic()
            health = service.get("/healthz")
            assert time.monotonic() - started < 5
            assert health.json() == {"status": "unavailable", "reason": "store unreachable"}


@pytest.mark.postgres
def test_a_store_that_refuses_the_login_stops_serve_with_one_redacted_line(
        pg_url: str, tmp_path: Path) -> None:
    bad = sa.make_url(pg_url).set(username="precast_nobody", password="s3cret-pw")
    url = bad.render_as_string(hide_password=False)
    result = _serve_once(tmp_path, Store(url, url, url))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("precast: the prediction store postgresql+psycopg://"
                               "precast_nobody:***@"), lines[0]
    assert 'refused the login: role "precast_nobody" does not exist' in lines[0]
    assert "s3cret-pw" not in result.stderr


@pytest.mark.postgres
def test_api_sessions_carry_the_timeouts_and_keepalives(pg_url: str) -> None:
    async def settings() -> tuple[Any, ...]:
        client = AsyncLookupClient(pg_url, limits=SessionLimits(
            statement_timeout_ms=1234, connect_timeout_s=2, keepalives_idle_s=17))
        await client.open()
        try:
            async with client._pool.connection() as conn:
                shown = await (await conn.execute("SHOW statement_timeout")).fetchone()
                read_only = await (await conn.execute(
                    "SHOW default_transaction_read_only")).fetchone()
                given = conn.info.get_parameters()
        finally:
            await client.close()
        return (shown[0], read_only[0], given["connect_timeout"], given["keepalives"],
                given["keepalives_idle"])

    assert asyncio.run(settings()) == ("1234ms", "on", "2", "1", "17")


@pytest.mark.postgres
def test_a_lock_on_the_view_costs_503s_but_never_a_stuck_lookup(tmp_path: Path) -> None:
    with _store("postgresql", tmp_path) as st:
        _publish(st, 1)
        with _serving(tmp_path, st, statement_timeout_ms=1000) as service:
            assert service.get("/v1/predictions/u0001").status_code == 200
            waiting = f"SELECT count(*) {_sessions_of(st)} AND wait_event_type = 'Lock'"
            locker = psycopg.connect(sa.make_url(st.admin).set(drivername="postgresql")
                                     .render_as_string(hide_password=False))
            try:
                locker.execute("LOCK TABLE predictions_current IN ACCESS EXCLUSIVE MODE")
                assert _error(service.get("/v1/predictions/u0001"))[:2] == (
                    503, "database_unavailable")
                # The server cancelled the lookup (statement_timeout): nothing of the API
                # still waits on the lock, although it is still held.
                _wait_for(lambda: _admin(st.admin, waiting)[0][0] == 0, seconds=3)
                assert locker.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            finally:
                locker.close()
            started = time.monotonic()
            assert service.get("/v1/predictions/u0001").status_code == 200
            assert service.batch({"ids": ["u0001"]}).status_code == 200
            assert time.monotonic() - started < 1


@pytest.mark.postgres
def test_terminated_backends_under_load_cost_at_most_one_failed_request(
        tmp_path: Path) -> None:
    with _store("postgresql", tmp_path) as st:
        _publish(st, 1)
        with _serving(tmp_path, st) as service:
            stop = time.monotonic() + 4
            failures: list[int] = []

            def hammer(batch: bool) -> int:
                count = 0
                with httpx.Client(base_url=f"http://127.0.0.1:{service.port}",
                                  timeout=20) as http:
                    while time.monotonic() < stop:
                        answer = (http.post("/v1/predictions:batchGet",
                                            content=b'{"ids": ["u0001", "u0002"]}')
                                  if batch else http.get(f"/v1/predictions/u{count % 100:04d}"))
                        if answer.status_code != 200:
                            failures.append(answer.status_code)
                        count += 1
                return count

            with ThreadPoolExecutor(6) as pool:
                calls = [pool.submit(hammer, i % 3 == 0) for i in range(6)]
                for _ in range(3):
                    time.sleep(1)
                    killed = _admin(st.admin, f"SELECT count(pg_terminate_backend(pid)) "
                                              f"{_sessions_of(st)}")[0][0]
                    assert killed >= 1
                answered = sum(call.result() for call in calls)
            assert answered > 100
            assert len(failures) <= 1, failures
