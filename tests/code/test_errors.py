"""precast.errors: every exception precast defines is on a declared side, retryable or not,
by its type (a subclass goes with its base, a rename changes nothing)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import precast
from precast.errors import EXIT_FAILED, EXIT_NOT_RETRYABLE, exit_code, retryable

# Failures the same inputs repeat: the CLI exits 3, Airflow fails the task without retrying.
NOT_RETRYABLE = {
    "precast.errors.NotRetryable", "precast.config.ConfigError",
    "precast.resources.UseCaseFileError",
    "precast.model.artifact.FeatureMismatchError", "precast.gate.champions.ChampionConflictError",
    "precast.store.types.OlderSnapshotError", "precast.store.types.PredictionsInputError",
    "precast.store.types.EmptyPredictionsError", "precast.store.types.DuplicateEntityError",
    "precast.steps.extract.QuarantineRateExceeded", "precast.validation.suites.SuiteError",
    "precast.validation.checks.ValidationFailed", "precast.steps.features.SqlColumnsError",
    "precast.steps.features.NotEnoughHistoryError",
    "precast.steps.features.MappingChangedError", "precast.steps.gate.ChallengerRejectedError",
    "precast.steps.promote.PromoteError", "precast.steps.retrain.RetrainInputsError",
    "precast.steps.rollback.RollbackTargetError", "precast.ui.status.ReaderMissingError",
}
# Failures that may pass on another try: I/O, a service that is down, data not there yet,
# a machine without the device asked for (another worker may have it), a refused request.
RETRYABLE = {
    "precast.serving.access.RequestRefused", "precast.serving.api.ApiError",
    "precast.orchestration.local.AirflowError", "precast.model.registry.RegistryUnavailableError",
    "precast.steps.extract.RawPartitionMissing", "precast.model.training.DeviceError",
    "precast.store.types.StoreError", "precast.store.types.NoSnapshotError",
    "precast.store.types.SnapshotNotFoundError", "precast.store.types.StoreUnavailableError",
    "precast.store.types.SwapBlockedError",
}


def precast_exceptions() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a module of the precast package."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(precast.__path__, "precast."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == module.__name__ and not name.startswith("_")):
                found[f"{obj.__module__}.{name}"] = obj
    return found


def test_every_precast_exception_is_declared_retryable_or_not() -> None:
    found = precast_exceptions()
    assert found, "no exception found: the walk is broken"
    unclassified = set(found) - NOT_RETRYABLE - RETRYABLE
    assert not unclassified, f"put each in NOT_RETRYABLE or RETRYABLE: {sorted(unclassified)}"
    gone = (NOT_RETRYABLE | RETRYABLE) - set(found)
    assert not gone, f"listed here but no longer defined: {sorted(gone)}"


@pytest.mark.parametrize("name", sorted(NOT_RETRYABLE | RETRYABLE))
def test_an_exception_retries_as_declared(name: str) -> None:
    cls = precast_exceptions()[name]
    exc = cls.__new__(cls)  # no __init__: some take required arguments
    BaseException.__init__(exc, "x")
    assert retryable(exc) is (name in RETRYABLE)
    assert exit_code(exc) == (EXIT_FAILED if name in RETRYABLE else EXIT_NOT_RETRYABLE)


def test_a_subclass_of_a_not_retryable_failure_is_not_retryable_whatever_its_name() -> None:
    from precast.steps.features import NotEnoughHistoryError

    class Renamed(NotEnoughHistoryError):
        pass

    assert not retryable(Renamed("x"))
    assert retryable(ValueError("x")) and retryable(OSError("x"))
    assert exit_code(Renamed("x")) == EXIT_NOT_RETRYABLE
