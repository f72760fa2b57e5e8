"""Airflow on one machine, run by precast: `precast airflow up | down | status`.

The four Airflow 3 components (api-server, scheduler, dag-processor, triggerer) run
as separate processes that precast owns, with pid and log files under
`PRECAST_HOME/airflow/services/`, the LocalExecutor, `dags/` as the DAGs folder, the
API bound to `airflow.host:airflow.port`, and the metadata database from
`airflow.metadata_url` (SQLite under PRECAST_HOME by default, PostgreSQL by
configuration). Any other Airflow setting can still be tuned with `AIRFLOW__*`
environment variables; the ones precast sets here win.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from precast.config import Config, redact_url

log = logging.getLogger(__name__)

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
HEALTH_KEYS = ("metadatabase", "scheduler", "triggerer", "dag_processor")
STOP_GRACE_S = 15.0


class AirflowError(RuntimeError):
    """The deployment cannot start, stop or be reached; the message says why and where."""


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    running: bool
    rss_mb: float
    log_path: Path


class LocalAirflow:
    """The Airflow deployment of one PRECAST_HOME."""

    def __init__(self, cfg: Config, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.settings = cfg.airflow
        self.home = (cfg.home / "airflow").resolve()
        self.services = self.home / "services"
        self.config_path = config_path

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def metadata_url(self) -> str:
        url = self.settings.metadata_url or f"sqlite:///{self.home / 'airflow.db'}"
        return os.path.expandvars(url)

    def dags_folder(self) -> Path:
        """`airflow.dags_folder`, else ./dags, else the dags/ of the source checkout."""
        candidates = [Path(self.settings.dags_folder)] if self.settings.dags_folder else [
            Path("dags"), Path(__file__).resolve().parents[2] / "dags"]
        for folder in candidates:
            if folder.is_dir():
                return folder.resolve()
        raise AirflowError(f"no DAGs folder at {', '.join(map(str, candidates))}: "
                           "set airflow.dags_folder")

    def parallelism(self) -> int:
        return self.settings.parallelism or max(2, os.cpu_count() or 2)

    def environment(self) -> dict[str, str]:
        """The process environment of every component (and of the tasks they run)."""
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "PRECAST_HOME": str(self.cfg.home.resolve()),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder()),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism()),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": str(self.settings.all_admins),
            "AIRFLOW__API__HOST": self.settings.host,
            "AIRFLOW__API__PORT": str(self.settings.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt_secret"),
            "AIRFLOW__API__SECRET_KEY": self._secret("secret_key"),
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
        })
        if self.metadata_url.startswith("postgresql"):  # async engine on psycopg 3, not asyncpg
            scheme, rest = self.metadata_url.split("://", 1)
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = f"postgresql+psycopg_async://{rest}"
        if self.config_path is not None:
            env["PRECAST_CONFIG"] = str(self.config_path.resolve())
        return env

    def _secret(self, name: str) -> str:
        """A random secret shared by the components, kept (0600) under the Airflow home."""
        path = self.home / f".{name}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _pid_path(self, name: str) -> Path:
        return self.services / f"{name}.pid"

    def log_path(self, name: str) -> Path:
        return self.services / f"{name}.log"

    def sessions(self) -> dict[str, tuple[int, float]]:
        """Component name → (session id, start time) as recorded at start, alive or not.

        Each component leads its own session, and every process it starts (executor
        workers, task runners, their Spark JVMs) stays in it, also when orphaned; Airflow
        rewrites process titles and environments, so the session is what identifies them.
        """
        out = {}
        for name in COMPONENTS:
            try:
                pid, created = self._pid_path(name).read_text().split()
                out[name] = (int(pid), float(created))
            except (OSError, ValueError):
                continue
        return out

    def _process(self, name: str) -> psutil.Process | None:
        """The live leader recorded for `name` (None when stopped or the pid was reused)."""
        pid, created = self.sessions().get(name, (0, 0.0))
        try:
            proc = psutil.Process(pid) if pid else None
            if proc and proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                return proc
        except psutil.Error:
            pass
        return None

    def status(self) -> list[ComponentStatus]:
        """Each component: pid, running, resident memory of every process in its session."""
        sessions = self.sessions()
        out = []
        for name in COMPONENTS:
            proc = self._process(name)
            members = session_members(dict([sessions[name]])) if name in sessions else []
            out.append(ComponentStatus(name, proc.pid if proc else None, proc is not None,
                                       _rss_mb(members), self.log_path(name)))
        return out

    def health(self) -> dict[str, str]:
        """Component health from the API server (`/api/v2/monitor/health`); {} if unreachable."""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as resp:
                body = json.load(resp)
        except (OSError, ValueError):
            return {}
        return {key: (body.get(key) or {}).get("status", "unknown") for key in HEALTH_KEYS}

    def up(self) -> None:
        """Migrate the metadata database, start the components, wait until all are healthy."""
        running = [s.name for s in self.status() if s.running]
        if len(running) == len(COMPONENTS):
            log.info("Airflow already runs at %s", self.url)
            return
        if running:
            raise AirflowError(f"Airflow is partly running ({', '.join(running)}): "
                               "run `precast airflow down` first")
        self.require_private_when_open()
        _require_free_port(self.settings.host, self.settings.port)
        self.services.mkdir(parents=True, exist_ok=True)
        env = self.environment()
        self._migrate(env)
        try:
            for name in COMPONENTS:
                self._start(name, env)
            self._wait_healthy()
        except BaseException:
            self.down()
            raise

    def require_private_when_open(self) -> None:
        """Refuse to listen beyond this machine while every visitor is an admin (anyone on
        the network could trigger rollback or promote and rewrite connections)."""
        if self.settings.all_admins and not _loopback(self.settings.host):
            raise AirflowError(
                f"airflow.host {self.settings.host} is reachable from the network while "
                "airflow.all_admins is true (no sign-in): set airflow.all_admins: false, or "
                "airflow.host: 127.0.0.1")

    def _migrate(self, env: dict[str, str]) -> None:
        path = self.log_path("db-migrate")
        with path.open("w") as out:
            done = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env,
                                  stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise AirflowError(f"airflow db migrate failed on {redact_url(self.metadata_url)}: "
                               f"{_last_line(path)} (log: {path})")

    def _start(self, name: str, env: dict[str, str]) -> None:
        # -P: not the working directory on sys.path, where a source checkout's
        # precast.egg-info would register precast's plugin a second time.
        args = [sys.executable, "-P", "-m", "airflow", name]
        if name == "api-server":
            args += ["--host", self.settings.host, "--port", str(self.settings.port),
                     "--workers", "1"]
        with self.log_path(name).open("ab") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._pid_path(name).write_text(f"{proc.pid} {psutil.Process(proc.pid).create_time()!r}")
        log.info("started %s (pid %d), log %s", name, proc.pid, self.log_path(name))

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_s
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            dead = [s for s in self.status() if not s.running]
            if dead:
                raise AirflowError(f"{dead[0].name} exited during start-up: "
                                   f"{_last_line(dead[0].log_path)} (log: {dead[0].log_path})")
            health = self.health()
            if health and all(v == "healthy" for v in health.values()):
                return
            time.sleep(1)
        raise AirflowError(f"Airflow not healthy after {self.settings.start_timeout_s}s: "
                           f"{health or 'API server not answering'} (logs: {self.services})")

    def down(self) -> list[str]:
        """Stop the components in reverse order, children before parents; returns what stopped.

        Whatever is left in a component's session afterwards (an orphaned task runner or
        Spark JVM) is stopped too, so nothing of the deployment keeps running.
        """
        stopped = []
        sessions = self.sessions()
        for name in reversed(COMPONENTS):
            proc = self._process(name)
            if proc is not None:
                stop_process_tree(proc)
                stopped.append(name)
            if name in sessions:
                for orphan in session_members(dict([sessions[name]])):
                    stop_process_tree(orphan)
                    stopped.append(f"{name} orphan pid {orphan.pid}")
            self._pid_path(name).unlink(missing_ok=True)
        return stopped


def session_members(sessions: dict[int, float]) -> list[psutil.Process]:
    """Live processes in the given sessions (session id → its leader's start time)."""
    found = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            started = sessions.get(os.getsid(proc.pid))
            if started is not None and proc.info["create_time"] >= started - 1 and \
                    proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for p in processes:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return round(total / 2**20, 1)


def stop_process_tree(proc: psutil.Process) -> None:
    """SIGTERM the deepest children first, then the parent; SIGKILL whatever outlives the grace."""
    try:
        family = [*reversed(proc.children(recursive=True)), proc]
    except psutil.Error:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=5)


def _loopback(host: str) -> bool:
    """Whether `host` is this machine only (localhost or a loopback address)."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_free_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise AirflowError(f"port {host}:{port} is in use: stop what listens there or set "
                               "airflow.port (PRECAST_AIRFLOW__PORT)") from None


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"
