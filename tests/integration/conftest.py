"""Fixtures shared by the integration tests: the test process's Airflow metadata database
and its one DagBag."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.helpers import DAGS, run_ok


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The test Airflow home's metadata database, migrated once (for dag.test and Variables)."""
    run_ok([sys.executable, "-m", "airflow", "db", "migrate"])


@pytest.fixture(scope="session")
def dagbag() -> Any:
    """The DAG files parsed once per test process.

    dag.test() reuses these DAG objects and updates their Params with each run's conf, so a
    test that runs a DAG gives every Param it depends on explicitly.
    """
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(DAGS))
