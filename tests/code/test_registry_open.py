"""Parallel first opens of a new MLflow registry (the first tasks of a fresh deployment).

MLflow creates and migrates an empty database on first open with no lock of its own; tasks
that opened a new registry at once interleaved its migrations ("table mcp_servers already
exists", "duplicate column name: step") and left a database no later open could repair.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import pg_database

OPENERS = 3
# Each opener imports everything, says it is ready, waits for "go", then opens the registry.
OPEN = """
import sys, time
from pathlib import Path
from precast.config import load_config
from precast.model import registry
import mlflow
cfg = load_config()
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
registry.client(cfg)
print("opened")
"""
CHECK = """
from precast.config import load_config
from precast.model import registry
cfg = load_config()
client = registry.client(cfg)
client.create_registered_model(cfg.model.name)
print(len(client.search_experiments()), registry.by_alias(cfg, registry.CHAMPION))
"""


def _run_at_once(home: Path, tracking_uri: str) -> list[subprocess.CompletedProcess[str]]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PRECAST_")},
           "PRECAST_HOME": str(home), "PRECAST_STORES__MLFLOW_TRACKING_URI": tracking_uri}
    go = home / "go"
    openers = [subprocess.Popen([sys.executable, "-c", OPEN, str(home / f"ready-{n}"), str(go)],
                                env=env, cwd=home, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
               for n in range(OPENERS)]
    deadline = time.monotonic() + 300  # a hang guard
    while len(list(home.glob("ready-*"))) < OPENERS:
        assert time.monotonic() < deadline and all(p.poll() is None for p in openers), \
            [p.communicate()[1] for p in openers if p.poll() is not None]
        time.sleep(0.05)
    go.touch()
    done = []
    for proc in openers:
        out, err = proc.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    done.append(subprocess.run([sys.executable, "-c", CHECK], env=env, cwd=home,
                               capture_output=True, text=True, timeout=300, check=False))
    return done


def _assert_all_opened(done: list[subprocess.CompletedProcess[str]]) -> None:
    *openers, check = done
    failed = [p.stderr.strip().splitlines()[-1] for p in openers if p.returncode != 0]
    assert failed == [], failed
    assert all(p.stdout.strip() == "opened" for p in openers)
    assert check.returncode == 0, check.stderr
    experiments, champion = check.stdout.split()
    assert (experiments, champion) == ("2", "None")  # Default and the model's, once each


def test_parallel_first_opens_of_a_sqlite_registry_leave_it_whole(tmp_path: Path) -> None:
    registry_db = tmp_path / "registry" / "mlflow.db"
    _assert_all_opened(_run_at_once(tmp_path, f"sqlite:///{registry_db}"))


def test_parallel_first_opens_of_a_postgresql_registry_leave_it_whole(tmp_path: Path) -> None:
    with pg_database("precast_mlflow") as url:
        _assert_all_opened(_run_at_once(tmp_path, url))
