"""Champion history and the audited overrides (`precast promote`), with a real MLflow registry.

History on both backends (SQLite and PostgreSQL); the overrides on SQLite with MLflow's
SQLite registry, through the library and the CLI.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from precast.cli.main import main
from precast.config import Config
from precast.gate import champions, policy
from precast.model import registry
from precast.steps import gate, promote
from precast.steps.promote import PromoteError
from tests.helpers import (
    copy_home,
    mlflow_runs_resolved_afresh,
    mlflow_server,
    register_two,
    store_roles,
)

T0 = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)


def test_history_says_which_version_was_champion_at_any_time(store_url: str) -> None:
    steps: list[tuple[str, str, champions.Decision, str, str | None]] = [
             ("1", "gate", "gate", "passed all 5 rules", "mlflow://report-1"),
             ("2", "gate", "gate", "passed all 9 rules against v1", "mlflow://report-2"),
             ("2", "ana", "pin", "holiday freeze", None),
             ("1", "bo", "rollback", "v2 over-predicts for tv users", "serving snapshot 3")]
    for hours, (version, by, decision, reason, evidence) in enumerate(steps):
        champions.record(store_url, "churn", version, decided_by=by, decision=decision,
                         reason=reason, evidence=evidence, at=T0 + timedelta(hours=hours))
    champions.record(store_url, "other", "9", decided_by="gate", decision="gate",
                     reason="another model", at=T0)

    assert champions.champion_at(store_url, "churn", T0 - timedelta(seconds=1)) is None
    seen = [champions.champion_at(store_url, "churn", T0 + timedelta(hours=h, minutes=30))
            for h in range(4)]
    assert [(p.model_version, p.decision, p.decided_by) for p in seen if p] == [
        ("1", "gate", "gate"), ("2", "gate", "gate"), ("2", "pin", "ana"), ("1", "rollback", "bo")]
    assert seen[1] is not None and seen[1].evidence == "mlflow://report-2"
    assert seen[1].valid_to == T0 + timedelta(hours=2)
    at_switch = champions.champion_at(store_url, "churn", T0 + timedelta(hours=1))
    assert at_switch is not None and at_switch.reason == "passed all 9 rules against v1"

    periods = champions.history(store_url, "churn")
    assert [p.valid_from for p in periods] == [T0 + timedelta(hours=h) for h in (3, 2, 1, 0)]
    assert [p.valid_to for p in periods][1:] == [T0 + timedelta(hours=h) for h in (3, 2, 1)]
    assert champions.current(store_url, "churn") == periods[0]
    assert periods[0].valid_to is None and not periods[0].pinned and periods[1].pinned
    assert champions.previous_version(store_url, "churn") == "2"
    assert champions.previous_version(store_url, "other") is None


def test_a_change_without_a_reason_is_refused_and_not_recorded(store_url: str) -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        champions.record(store_url, "churn", "1", decided_by="ana", decision="override",
                         reason="  ")
    assert champions.history(store_url, "churn") == []


# ---------------------------------------------------------------- overrides on a registry


@pytest.fixture(scope="module")
def registered_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with model versions 1 (champion) and 2 (challenger) registered in MLflow, built
    once for the module (MLflow's store and two logged models take seconds)."""
    home = tmp_path_factory.mktemp("registry") / "home"
    register_two(Config(home=home))
    return home


@pytest.fixture
def cfg(registered_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[Config]:
    """A private copy of that home, as PRECAST_HOME."""
    home = tmp_path / "home"
    with mlflow_runs_resolved_afresh():
        copy_home(registered_home, home)
        monkeypatch.setenv("PRECAST_HOME", str(home))
        monkeypatch.chdir(tmp_path)
        yield Config(home=home)


def _champion(cfg: Config) -> str:
    ref = registry.by_alias(cfg, registry.CHAMPION)
    assert ref is not None
    return ref.version


def test_force_promotes_the_challenger_with_who_and_why(cfg: Config) -> None:
    with pytest.raises(PromoteError, match="needs a reason"):
        promote.run(cfg, "force", by="ana", reason="")
    with pytest.raises(PromoteError, match="no version '7'"):
        promote.run(cfg, "force", by="ana", reason="try", version="7")
    assert _champion(cfg) == "1" and champions.history(cfg.predictions_url, cfg.model.name) == []

    result = promote.run(cfg, "force", by="ana", reason="slice drop is a labelling artefact")
    assert (result.model_version, result.previous_champion) == ("2", "1")
    assert _champion(cfg) == "2"
    (period,) = champions.history(cfg.predictions_url, cfg.model.name)
    assert (period.model_version, period.decision, period.decided_by, period.reason) == (
        "2", "override", "ana", "slice drop is a labelling artefact")
    ref = registry.version(cfg, "2")
    assert ref is not None and ref.tags["gate.override"] == "forced"
    assert ref.tags["champion_set_by"] == "ana"


def test_a_pinned_champion_stops_the_gate_until_unpinned(cfg: Config) -> None:
    challenger = registry.by_alias(cfg, registry.CHALLENGER)
    champion = registry.by_alias(cfg, registry.CHAMPION)
    assert challenger is not None and champion is not None
    with pytest.raises(PromoteError, match="is not pinned"):
        promote.run(cfg, "unpin", by="bo", reason="nothing to release")
    with pytest.raises(PromoteError, match="applies to the champion \\(v1\\), not v2"):
        promote.run(cfg, "pin", by="bo", reason="freeze", version="2")
    promote.run(cfg, "pin", by="bo", reason="holiday freeze")
    with pytest.raises(PromoteError, match="already pinned \\(by bo: holiday freeze\\)"):
        promote.run(cfg, "pin", by="cy", reason="again")

    pin = gate._pin(cfg, champion, challenger)
    assert pin is not None and pin.decided_by == "bo"
    metrics = {"roc_auc": 0.9, "mean_score": 0.3, "label_rate": 0.3}
    decision = policy.decide(cfg.gate, metrics, {**metrics, "roc_auc": 0.8}, pin=pin)
    assert not decision.promote
    (failed,) = decision.failed()
    assert failed.startswith("champion not pinned: v1 pinned by bo at ")
    assert failed.endswith(": holiday freeze (precast promote --unpin)")
    assert gate._pin(cfg, champion, champion) is None  # re-running the gate on v1 is fine

    promote.run(cfg, "unpin", by="bo", reason="freeze over")
    assert gate._pin(cfg, champion, challenger) is None
    assert [p.decision for p in champions.history(cfg.predictions_url, cfg.model.name)] == [
        "unpin", "pin"]
    assert _champion(cfg) == "1"


def test_cli_promote_and_champions(cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["promote", "--force"])  # --reason is required
    assert usage.value.code == 2
    capsys.readouterr()
    assert main(["promote", "--force", "--version", "404", "--reason", "x"]) == 3
    assert capsys.readouterr().err.strip() == (
        f"precast: promote failed: PromoteError: {cfg.model.name} has no version '404'")
    assert main(["promote", "--force", "--reason", "reviewed the report", "--by", "ana"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"force: {cfg.model.name} v2 (champion was v1), recorded as decided by ana: "
        "reviewed the report")
    assert main(["champions"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("v2 ") and line.endswith("override by ana: reviewed the report")


def test_a_registry_that_cannot_answer_is_never_read_as_no_champion(tmp_path: Path) -> None:
    import sqlite3

    cfg = Config(home=tmp_path / "home")
    mlflow_client = registry.client(cfg)
    mlflow_client.create_registered_model(cfg.model.name)
    assert registry.by_alias(cfg, registry.CHAMPION) is None  # definitely none: fine
    assert registry.version(cfg, "7") is None
    db = sqlite3.connect(tmp_path / "home" / "mlflow.db")
    db.execute("DROP TABLE registered_model_aliases")  # the registry breaks under the gate
    db.commit()
    db.close()
    with pytest.raises(registry.RegistryUnavailableError,
                       match=rf"model registry at sqlite:///.*could not answer for "
                             rf"{cfg.model.name} @champion: .*no such table"):
        registry.by_alias(cfg, registry.CHAMPION)
    from precast.errors import retryable

    assert retryable(registry.RegistryUnavailableError("x"))  # the task tries again


def test_a_tracking_server_stopped_mid_run_is_never_read_as_no_champion(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real `mlflow server` answers, then stops: every lookup the gate and pins make fails
    as RegistryUnavailableError (retryable, CLI exit 1) within seconds, never "no champion"
    (MLflow's own retries would wait about 4 minutes; precast's environment bounds them)."""
    import time

    from precast.errors import retryable
    from precast.runtime import MLFLOW_CLIENT_ENV

    for key, value in MLFLOW_CLIENT_ENV.items():  # what prepare_environment sets
        monkeypatch.setenv(key, value)
    home = tmp_path / "home"
    with mlflow_server(tmp_path / "server.db", tmp_path / "server-artifacts",
                       tmp_path / "server.log") as server:
        cfg = Config(home=home).with_overrides({"stores.mlflow_tracking_uri": server.url})
        register_two(cfg)
        assert _champion(cfg) == "1"
        promote.run(cfg, "pin", by="bo", reason="holiday freeze")
        server.stop()
        started = time.monotonic()
        lookups = [lambda: registry.by_alias(cfg, registry.CHAMPION),
                   lambda: registry.by_alias(cfg, registry.CHALLENGER),
                   lambda: registry.version(cfg, "1"),
                   lambda: champions.agreed_champion(cfg),  # the gate's, pins' champion
                   lambda: gate.run(cfg, T0.date()),
                   lambda: promote.run(cfg, "unpin", by="bo", reason="over")]
        for lookup in lookups:
            with pytest.raises(registry.RegistryUnavailableError,
                               match=rf"model registry at {server.url} could not answer for "
                                     rf"{cfg.model.name} (@|v)"):
                lookup()
        assert time.monotonic() - started < 60  # not MLflow's default 4 minutes a lookup
        assert retryable(registry.RegistryUnavailableError("x"))
        now = champions.current(cfg.predictions_url, cfg.model.name)
        assert now is not None and now.pinned  # the pin stands: nothing skipped it
        monkeypatch.setenv("PRECAST_HOME", str(home))
        monkeypatch.setenv("PRECAST_STORES__MLFLOW_TRACKING_URI", server.url)
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        assert main(["run", "gate", "--date", "2026-03-01"]) == 1  # retryable, not exit 3
        assert "RegistryUnavailableError: model registry at" in capsys.readouterr().err


def test_a_locked_store_fails_the_champion_reads_as_retryable_never_as_no_pin(
        cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another connection holds the SQLite store exclusively while the gate and promote read
    the champion history: StoreUnavailableError (retryable) naming the lock, never "no
    champion recorded" or "not pinned"."""
    import sqlite3

    from precast import store
    from precast.errors import retryable
    from precast.store import engine as store_engine

    promote.run(cfg, "pin", by="bo", reason="holiday freeze")
    champion, challenger = (registry.by_alias(cfg, a)
                            for a in (registry.CHAMPION, registry.CHALLENGER))
    assert challenger is not None and gate._pin(cfg, champion, challenger) is not None
    monkeypatch.setattr(store_engine, "SQLITE_BUSY_TIMEOUT_S", 0.2)  # the lock outlasts the wait
    holder = sqlite3.connect(cfg.space / "predictions.db", isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # WAL readers wait too
        holder.execute("BEGIN EXCLUSIVE")
        reads = [lambda: gate._pin(cfg, champion, challenger),
                 lambda: champions.current(cfg.predictions_url, cfg.model.name),
                 lambda: champions.agreed_champion(cfg),
                 lambda: gate.run(cfg, T0.date()),
                 lambda: promote.run(cfg, "unpin", by="bo", reason="freeze over")]
        for read in reads:
            with pytest.raises(store.StoreUnavailableError,
                               match=r"prediction store at sqlite:///.*predictions\.db could "
                                     r"not answer while reading the champion (history|changes) "
                                     r"of .*: database is locked \(retry when it is free\)"
                               ) as failed:
                read()
            assert retryable(failed.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert gate._pin(cfg, champion, challenger) is not None  # free again: still pinned


# ---------------------------------------------------------------- one truth for the champion


def test_an_alias_moved_outside_precast_stops_the_gate_and_pins_until_settled(
        cfg: Config, capsys: pytest.CaptureFixture[str]) -> None:
    """No change in flight and the alias disagrees with champion_history: the gate and
    pins refuse, naming both; --force (or a model rollback) is the way to settle it."""
    promote.run(cfg, "force", by="ana", reason="reviewed")  # v2, recorded
    registry.set_alias(cfg, registry.CHAMPION, "1")  # someone, in the MLflow UI
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "champion disagreement: the registry's 'champion' alias of precast is v1" in (
        capsys.readouterr().out)
    with pytest.raises(champions.ChampionConflictError,
                       match=r"alias of precast is v1 but champion_history records v2 \(override "
                             r"by ana\) and no change is in flight.*precast promote --force"):
        champions.agreed_champion(cfg)
    with pytest.raises(champions.ChampionConflictError):
        promote.run(cfg, "pin", by="bo", reason="freeze")
    from precast.errors import retryable

    assert not retryable(champions.ChampionConflictError("x"))  # a person decides
    promote.run(cfg, "force", by="bo", reason="v1 is what the MLflow UI says", version="1")
    promote.run(cfg, "pin", by="bo", reason="freeze")
    assert [(p.model_version, p.decision) for p in champions.history(
        cfg.predictions_url, cfg.model.name)] == [("1", "pin"), ("1", "override"),
                                                  ("2", "override")]


DIE_AROUND_THE_ALIAS = """
import os, signal, sys
from precast.model import registry
from precast.config import load_config
from precast.steps import promote

move, when = registry.set_alias, sys.argv[1]

def move_and_die(cfg, alias, version):
    if alias == registry.CHAMPION and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    move(cfg, alias, version)
    if alias == registry.CHAMPION and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)

registry.set_alias = move_and_die
promote.run(load_config(), "force", by="ana", reason="reviewed the report")  # PRECAST_HOME
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_change_killed_around_the_alias_move_is_completed_by_the_next_action(
        cfg: Config, when: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The process dies just before or just after the alias moves (its intent written, its
    history row not): the next promote rolls the change forward, so alias and history end as
    after one clean run, with the time the change was asked for."""
    import signal
    import subprocess
    import sys

    died = subprocess.run([sys.executable, "-c", DIE_AROUND_THE_ALIAS, when],
                          capture_output=True, text=True, timeout=300, check=False)
    assert died.returncode == -signal.SIGKILL, died.stderr
    assert _champion(cfg) == ("1" if when == "before" else "2")
    assert champions.history(cfg.predictions_url, cfg.model.name) == []
    (interrupted,) = champions.pending(cfg)
    assert (interrupted.model_version, interrupted.previous_version, interrupted.decision,
            interrupted.decided_by) == ("2", "1", "override", "ana")
    assert main(["status"]) == 0  # status reports it and changes nothing
    assert "interrupted champion change: v2 (override by ana, " in capsys.readouterr().out
    assert champions.pending(cfg) == [interrupted]

    promote.run(cfg, "pin", by="bo", reason="freeze")  # settles first, then pins v2
    assert _champion(cfg) == "2" and champions.pending(cfg) == []
    history = champions.history(cfg.predictions_url, cfg.model.name)
    assert [(p.model_version, p.decision, p.decided_by, p.reason) for p in history] == [
        ("2", "pin", "bo", "freeze"), ("2", "override", "ana", "reviewed the report")]
    assert history[1].valid_from == interrupted.requested_at
    assert champions.settle(cfg) == []  # nothing left to do, however often it runs


@pytest.mark.postgres
def test_a_member_of_the_writer_role_runs_every_write_of_the_pipeline(
        cfg: Config, pg_url: str) -> None:
    """After `precast store setup`: a login in the writer role publishes, promotes through
    the gate's path, pins, forces, rolls back, records monitoring figures and alerts, keeps
    retention; a login in the reader role reads all of it and writes none of it."""
    import pyarrow as pa
    import sqlalchemy as sa

    from precast import store
    from precast.monitoring import alerts, model_metrics
    from precast.serving.lookup import LookupClient
    from precast.steps import monitor, rollback

    admin_url = cfg.with_overrides({"stores.predictions_url": pg_url}).predictions_url
    with store_roles(admin_url) as roles:
        as_job = cfg.with_overrides({"stores.predictions_url": roles.login(pg_url, roles.job),
                                     "stores.writer_role": roles.writer,
                                     "stores.keep_snapshots": 2})
        day = datetime(2026, 3, 1, tzinfo=UTC)

        def publish(version: str, days: int) -> store.SnapshotInfo:
            batch = pa.RecordBatch.from_pydict({
                "entity_id": ["a"], "score": [int(version) / 10],
                "scored_at": pa.array([day], pa.timestamp("us", tz="UTC"))})
            meta = store.SnapshotMeta((day + timedelta(days=days)).date(), cfg.model.name,
                                      version, f"data-{days}")
            return store.publish(as_job.predictions_url, [batch], meta,
                                 keep=as_job.stores.keep_snapshots,
                                 policy=store.WritePolicy.of(as_job))

        first = publish("1", 0)
        champions.change(as_job, "2", decided_by="gate", decision="gate", reason="passed")
        publish("2", 1)
        promote.run(as_job, "pin", by="ana", reason="freeze")
        promote.run(as_job, "unpin", by="ana", reason="thaw")
        rollback.run(as_job, "model:1", by="bo", reason="v2 is off")
        promote.run(as_job, "force", by="cy", reason="v2 after all", version="2")
        model_metrics.write_metrics(as_job, day.date(), "2", "drift",
                             [model_metrics.MetricRow("score", "psi", 0.3)])
        unreachable = as_job.with_overrides({"monitor.webhook_url": "http://127.0.0.1:9/x"})
        alerts.raise_alerts(unreachable, [alerts.Alert(day.date(), "psi_max", "score", "drift")])
        assert [d["attempts"] for d in alerts.deliveries(as_job)] == [1]  # recorded, as writer
        assert not monitor.retrain_decision(as_job, day.date()).retrain
        publish("2", 2)  # retention (keep 2) drops the first snapshot's table, as the writer
        assert store.snapshots(as_job.predictions_url)[0].status == "retired"

        as_app = as_job.with_overrides({"stores.predictions_url": roles.login(
            pg_url, roles.app)}).predictions_url
        with LookupClient(as_app) as client:
            assert client.get_one("a").score == 0.2
        assert [p.decision for p in champions.history(as_app, cfg.model.name)] == [
            "override", "rollback", "unpin", "pin", "gate"]
        engine = store.make_engine(as_app)
        try:
            assert first.table_name not in sa.inspect(engine).get_table_names()
            for table in store.control_tables():
                with engine.connect() as conn:
                    conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
                with engine.connect() as conn, pytest.raises(sa.exc.ProgrammingError,
                                                              match="permission denied"):
                    conn.execute(sa.text(f"DELETE FROM {table}"))
        finally:
            engine.dispose()
