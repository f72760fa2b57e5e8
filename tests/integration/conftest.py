"""Fixtures shared by the integration tests: the test process's Airflow metadata database
and the DAGs of given use cases."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from precast.use_case import USE_CASES_ENV
from tests.helpers import CHURN, DAGS, run_ok


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The test Airflow home's metadata database, migrated once (for dag.test and Variables)."""
    run_ok([sys.executable, "-m", "airflow", "db", "migrate"])


def parse_dags(configs: tuple[Path, ...]) -> Any:
    """The DAG files parsed with PRECAST_USE_CASES naming `configs` (no import errors)."""
    from airflow.dag_processing.dagbag import DagBag

    before = os.environ.get(USE_CASES_ENV)
    os.environ[USE_CASES_ENV] = os.pathsep.join(str(c) for c in configs)
    try:
        bag = DagBag(str(DAGS))
    finally:
        if before is None:
            del os.environ[USE_CASES_ENV]
        else:
            os.environ[USE_CASES_ENV] = before
    assert bag.import_errors == {}, bag.import_errors
    return bag


@pytest.fixture(scope="session")
def dagbag() -> Any:
    """The churn example's DAGs, parsed once per test process (for their structure)."""
    return parse_dags((CHURN,))


@pytest.fixture
def dags_of(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """`dags_of(config, ...)`: the DAGs of those use cases (each task runs its use case).

    dag.test() reuses the DAG objects and updates their Params with each run's conf, so a
    test that runs a DAG gives every Param it depends on explicitly.
    """

    def parse(*configs: Path) -> Any:
        monkeypatch.setenv(USE_CASES_ENV, os.pathsep.join(str(c) for c in configs))
        return parse_dags(configs)

    return parse
