"""`precast airflow` without starting Airflow: environment, refusals, stopping process trees."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from precast.cli.main import main
from precast.config import Config, load_config
from precast.orchestration.local import (
    COMPONENTS,
    AirflowError,
    LocalAirflow,
    session_members,
    stop_process_tree,
)
from tests.helpers import CHURN

REPO = Path(__file__).resolve().parents[2]


def _airflow(tmp_path: Path, **settings: object) -> LocalAirflow:
    env = {"PRECAST_HOME": str(tmp_path / "home"), "PRECAST_CONFIG": str(tmp_path / "none.yaml")}
    cfg: Config = load_config(CHURN, environ=env)
    return LocalAirflow(cfg.with_overrides({f"airflow.{k}": v for k, v in settings.items()}),
                        CHURN)


def test_environment_follows_the_port_and_owns_the_home(tmp_path: Path) -> None:
    env = _airflow(tmp_path, port=28123, parallelism=3).environment()
    home = (tmp_path / "home" / "airflow").resolve()
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:28123/execution/"
    assert env["AIRFLOW__API__PORT"] == "28123" and env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "False"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(REPO / "dags")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home / 'airflow.db'}"
    assert env["PRECAST_CONFIG"] == str(CHURN)
    # one secret shared by every component, kept private and stable across calls
    secret = home / ".jwt_secret"
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == secret.read_text()
    assert secret.stat().st_mode & 0o077 == 0
    assert _airflow(tmp_path).environment()["AIRFLOW__API_AUTH__JWT_SECRET"] == secret.read_text()


def test_postgres_metadata_uses_psycopg_for_the_async_engine_too(tmp_path: Path) -> None:
    url = "postgresql+psycopg://airflow@db.example:5432/airflow"
    env = _airflow(tmp_path, metadata_url=url).environment()
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == url
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == (
        "postgresql+psycopg_async://airflow@db.example:5432/airflow")


def test_parallelism_defaults_to_the_cores_and_at_least_two(tmp_path: Path) -> None:
    assert _airflow(tmp_path).parallelism() == max(2, psutil.cpu_count() or 2)


def test_up_refuses_a_port_in_use_with_the_setting_to_change(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        airflow = _airflow(tmp_path, port=busy.getsockname()[1])
        with pytest.raises(AirflowError, match="is in use.*airflow.port"):
            airflow.up()
    assert not airflow.services.exists()  # nothing was started or migrated


def test_missing_dags_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(AirflowError, match="no DAGs folder at .*nowhere"):
        _airflow(tmp_path, dags_folder=str(tmp_path / "nowhere")).dags_folder()


def test_status_and_down_of_a_stopped_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    airflow = _airflow(tmp_path, port=28124)
    assert [s.running for s in airflow.status()] == [False] * len(COMPONENTS)
    assert airflow.health() == {}
    monkeypatch.setenv("PRECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRECAST_AIRFLOW__PORT", "28124")
    assert main(["airflow", "status", "--config", str(CHURN)]) == 1
    assert main(["airflow", "down", "--config", str(CHURN)]) == 0
    out = capsys.readouterr().out
    assert "api-server     stopped" in out and "nothing was running" in out


def test_stop_process_tree_stops_children_before_the_parent() -> None:
    code = ("import subprocess, sys, time\n"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
            " for _ in range(2)]\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
    proc = psutil.Process(parent.pid)
    family = [proc, *proc.children(recursive=True)]
    assert len(family) == 3
    stop_process_tree(proc)
    parent.wait(timeout=5)
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in family)


def test_down_also_stops_orphans_left_in_a_components_session(tmp_path: Path) -> None:
    """A task runner whose parent died keeps the component's session: `down` finds it there."""
    code = ("import subprocess, sys\n"
            "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(kid.pid, flush=True)\n")  # the leader exits at once: its child is orphaned
    leader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert leader.stdout is not None
    orphan = psutil.Process(int(leader.stdout.readline()))
    created = psutil.Process(leader.pid).create_time()
    leader.wait(timeout=10)
    airflow = _airflow(tmp_path)
    airflow.services.mkdir(parents=True)
    (airflow.services / "scheduler.pid").write_text(f"{leader.pid} {created!r}")
    assert [p.pid for p in session_members({leader.pid: created})] == [orphan.pid]
    assert airflow.status()[COMPONENTS.index("scheduler")].running is False
    assert airflow.down() == [f"scheduler orphan pid {orphan.pid}"]
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
    assert session_members({leader.pid: created}) == []


def test_up_refuses_the_network_while_everyone_is_an_admin(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AirflowError, match="airflow.host 0.0.0.0 is reachable from the network "
                                           "while airflow.all_admins is true"):
        _airflow(tmp_path, host="0.0.0.0").up()
    assert not (tmp_path / "home" / "airflow" / "services").exists()  # nothing was started
    _airflow(tmp_path, host="0.0.0.0", all_admins=False).require_private_when_open()
    _airflow(tmp_path, host="::1").require_private_when_open()  # loopback: fine
    monkeypatch.setenv("PRECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRECAST_AIRFLOW__HOST", "0.0.0.0")
    assert main(["airflow", "up", "--config", str(CHURN)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set airflow.all_admins: false" in err
