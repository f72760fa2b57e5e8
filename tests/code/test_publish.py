"""Prediction store, publish step and lookup client on real SQLite files and real PostgreSQL.

Store tests run on both backends (`store_url` is parametrised); the PostgreSQL cases carry
the `postgres` mark and are skipped with a reason when no server answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from precast import store
from precast.config import Config
from precast.lake import Lake, manifest_path, write_json
from precast.resources import statements
from precast.serving.lookup import Lookup, LookupClient, NoSnapshotError
from precast.steps import publish as publish_step
from precast.store import (
    DuplicateEntityError,
    EmptyPredictionsError,
    OlderSnapshotError,
    PredictionsInputError,
    SnapshotMeta,
    SnapshotNotFoundError,
)
from precast.store import sql as store_sql

DAY = date(2026, 3, 1)
SCORED_AT = datetime(2026, 3, 1, 6, 30, 15, 123456, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
CONTROL = {"prediction_snapshots", "prediction_activations", "champion_history",
           "champion_changes", "model_metrics", "alerts", "alert_deliveries"}


def _batch(ids: list[str], scores: list[float], **extra: list[object]) -> pa.RecordBatch:
    columns: dict[str, pa.Array] = {
        "entity_id": pa.array(ids, pa.string()),
        "score": pa.array(scores, pa.float64()),
        "scored_at": pa.array([SCORED_AT] * len(ids), TS),
    }
    columns.update({name: pa.array(values) for name, values in extra.items()})
    return pa.RecordBatch.from_pydict(columns)


def _meta(version: str = "1", day: date = DAY) -> SnapshotMeta:
    return SnapshotMeta(snapshot_date=day, model_name="churn", model_version=version,
                        data_version=f"data-{version}")


def _ids(n: int) -> list[str]:
    return [f"u{i:05d}" for i in range(n)]


def _scores(n: int, offset: float) -> list[float]:
    return [offset + i / 3 for i in range(n)]  # thirds: not exactly representable, must round-trip


def _tables(url: str) -> set[str]:
    engine = store.make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _served(url: str, ids: list[str]) -> dict[str, tuple[float | None, int | None]]:
    with LookupClient(url) as client:
        return {r.entity_id: (r.score, r.snapshot_id) for r in client.get(ids)}


def test_publish_then_lookup_returns_exact_scores(store_url: str) -> None:
    info = store.publish(store_url, [_batch(["a", "b"], [0.1, 2 / 3])], _meta(), keep=3)
    assert (info.snapshot_id, info.table_name, info.row_count, info.status, info.current) == (
        1, "predictions_1", 2, "published", True)
    with LookupClient(store_url) as client:
        got = client.get(["b", "nobody", "a"])
    assert got == [
        Lookup("b", 2 / 3, False, "churn", "1", 1, DAY, SCORED_AT),
        Lookup("nobody", None, True, "churn", "1", 1, DAY, None),
        Lookup("a", 0.1, False, "churn", "1", 1, DAY, SCORED_AT),
    ]
    with LookupClient(store_url) as client:
        assert client.get_one("a") == got[2]
        assert client.get_one("nobody") == got[1]
        assert client.current().snapshot_id == 1


def test_misses_get_the_snapshot_fallback_or_the_clients(store_url: str) -> None:
    meta = SnapshotMeta(snapshot_date=DAY, model_name="churn", model_version="1",
                        data_version="d", fallback_score=0.125)
    store.publish(store_url, [_batch(["a"], [0.5])], meta, keep=3)
    with LookupClient(store_url) as client:
        miss = client.get_one("ghost")
        assert (miss.score, miss.fallback, miss.found, miss.snapshot_id) == (0.125, True, False, 1)
        assert [(r.score, r.fallback) for r in client.get(["ghost", "a"])] == [
            (0.125, True), (0.5, False)]
    with LookupClient(store_url, fallback_score=0.3) as client:
        assert (client.get_one("ghost").score, client.get_one("a").score) == (0.3, 0.5)


def test_lookup_before_any_publish_raises_no_snapshot(store_url: str) -> None:
    with LookupClient(store_url) as client:
        for call in (lambda: client.get(["a"]), lambda: client.get_one("a")):
            with pytest.raises(NoSnapshotError, match="publish"):
                call()
        assert store.current(store_url) is None
        assert store.snapshots(store_url) == []
        store.publish(store_url, [_batch(["a"], [0.5])], _meta(), keep=3)
        assert client.get_one("a").score == 0.5  # the same client, once there is a snapshot


def test_lookup_handles_many_ids_duplicates_and_empty_requests(store_url: str) -> None:
    ids = _ids(1200)  # one statement, however many ids
    store.publish(store_url, [_batch(ids, _scores(1200, 0.0))], _meta(), keep=3)
    with LookupClient(store_url) as client:
        assert client.get([]) == []
        got = client.get([*ids, "u00001", "ghost"])
        with pytest.raises(TypeError):
            client.get("u00001")
        assert client.get_one("u00007").score == 7 / 3
    assert [r.score for r in got[:1200]] == _scores(1200, 0.0)
    assert (got[1200].score, got[1200].found, got[1201].found) == (1 / 3, True, False)
    assert [r.entity_id for r in got] == [*ids, "u00001", "ghost"]


def test_second_publish_swaps_view_and_records_both(store_url: str) -> None:
    store.publish(store_url, [_batch(["a", "b"], [0.1, 0.2])], _meta("1"), keep=3)
    second = store.publish(store_url, [_batch(["b", "c"], [0.7, 0.8])], _meta("2"), keep=3)
    assert _served(store_url, ["a", "b", "c"]) == {
        "a": (None, 2), "b": (0.7, 2), "c": (0.8, 2)}
    assert [(s.snapshot_id, s.model_version, s.data_version, s.row_count, s.status, s.current)
            for s in store.snapshots(store_url)] == [
        (1, "1", "data-1", 2, "published", False), (2, "2", "data-2", 2, "published", True)]
    assert store.current(store_url) == second
    assert second.published_at is not None and second.published_at >= second.created_at


def test_retention_keeps_only_the_newest_n(store_url: str) -> None:
    for version in "1234":
        store.publish(store_url, [_batch(["a"], [float(version)])], _meta(version), keep=2)
    assert [(s.snapshot_id, s.status) for s in store.snapshots(store_url)] == [
        (1, "retired"), (2, "retired"), (3, "published"), (4, "published")]
    assert _tables(store_url) == {*CONTROL, "predictions_3", "predictions_4"}
    assert _served(store_url, ["a"]) == {"a": (4.0, 4)}


def test_publish_failing_midway_keeps_previous_snapshot_served(store_url: str) -> None:
    old_ids, new_ids = _ids(40), _ids(60)
    store.publish(store_url, [_batch(old_ids, _scores(40, 0.5))], _meta("1"), keep=3)

    def half_then_fail() -> Iterator[pa.RecordBatch]:
        yield _batch(new_ids[:30], _scores(30, 9.0))
        raise RuntimeError("scoring file vanished")

    with pytest.raises(RuntimeError, match="scoring file vanished"):
        store.publish(store_url, half_then_fail(), _meta("2"), keep=3)

    served = _served(store_url, new_ids)
    assert {i: served[i] for i in old_ids} == {
        i: (s, 1) for i, s in zip(old_ids, _scores(40, 0.5), strict=True)}
    assert {served[i] for i in new_ids[40:]} == {(None, 1)}
    assert [(s.model_version, s.status, s.table_name) for s in store.snapshots(store_url)] == [
        ("1", "published", "predictions_1"), ("2", "failed", None)]
    assert "scoring file vanished" in (store.snapshots(store_url)[1].note or "")
    assert _tables(store_url) == {*CONTROL, "predictions_1"}

    third = store.publish(store_url, [_batch(new_ids, _scores(60, 9.0))], _meta("3"), keep=3)
    assert (third.model_version, third.row_count, third.current) == ("3", 60, True)
    assert _served(store_url, new_ids[-1:]) == {
        new_ids[-1]: (_scores(60, 9.0)[-1], third.snapshot_id)}


def test_rollback_and_roll_forward_are_recorded(store_url: str) -> None:
    for version in "123":
        store.publish(store_url, [_batch(["a"], [float(version)])], _meta(version), keep=2)
    back = store.activate(store_url, 2, by="ana", reason="v3 over-predicts")
    assert (back.snapshot_id, back.current, back.model_version) == (2, True, "2")
    assert (back.activated_by, back.activation_reason) == ("ana", "v3 over-predicts")
    assert _served(store_url, ["a"]) == {"a": (2.0, 2)}
    assert store.current(store_url) == back
    with pytest.raises(SnapshotNotFoundError, match=r"snapshot 1: it is retired.*\[2, 3\]"):
        store.activate(store_url, 1, by="ana", reason="x")
    with pytest.raises(SnapshotNotFoundError, match="snapshot 99: it does not exist"):
        store.activate(store_url, 99, by="ana", reason="x")
    with pytest.raises(ValueError, match="who .by. and why .reason."):
        store.activate(store_url, 3, by="ana", reason=" ")
    assert _served(store_url, ["a"]) == {"a": (2.0, 2)}
    forward = store.activate(store_url, 3, by="bo", reason="fixed upstream")
    assert (forward.snapshot_id, forward.current) == (3, True)
    assert _served(store_url, ["a"]) == {"a": (3.0, 3)}
    store.activate(store_url, 2, by="ana", reason="again")
    store.publish(store_url, [_batch(["a"], [4.0])], _meta("4"), keep=1)
    assert [(s.snapshot_id, s.status, s.current) for s in store.snapshots(store_url)] == [
        (1, "retired", False), (2, "retired", False), (3, "retired", False),
        (4, "published", True)]
    assert _history(store_url) == [
        (1, None, "publish", "publish"), (2, 1, "publish", "publish"),
        (3, 2, "publish", "publish"), (2, 3, "ana", "rollback"), (3, 2, "bo", "rollback"),
        (2, 3, "ana", "rollback"), (4, 2, "publish", "publish")]
    engine = store.make_engine(store_url)
    try:
        with engine.connect() as conn:
            at = conn.execute(sa.text(statements("served_at")[0]),
                              {"at": forward.activated_at.isoformat(sep=" ")}).one()
    finally:
        engine.dispose()
    assert (at.snapshot_id, at.activated_by, at.reason) == (3, "bo", "fixed upstream")


def _history(url: str) -> list[tuple[object, ...]]:
    engine = store.make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT snapshot_id, previous_snapshot_id, activated_by, action "
                "FROM prediction_activations ORDER BY activation_id")]
    finally:
        engine.dispose()


def test_lineage_is_recorded_and_joins_every_served_row(store_url: str) -> None:
    meta = SnapshotMeta(snapshot_date=DAY, model_name="churn", model_version="7",
                        data_version="inf-1", mlflow_run_id="run-abc",
                        training_data_version="train-9", code_version="c0ffee",
                        fallback_score=0.2)
    store.publish(store_url, [_batch(["a", "b"], [0.1, 0.9])], meta, keep=2)
    engine = store.make_engine(store_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(statements("lineage")[0]), {"entity_id": "b"}).all()
    finally:
        engine.dispose()
    assert [tuple(r)[:9] for r in rows] == [
        ("b", 0.9, 1, "churn", "7", "run-abc", "train-9", "inf-1", "c0ffee")]


def test_duplicate_ids_are_rejected_naming_one(store_url: str) -> None:
    store.publish(store_url, [_batch(["a"], [0.1])], _meta("1"), keep=3)
    batches = [_batch(["x", "dup-7"], [0.1, 0.2]), _batch(["y", "dup-7"], [0.3, 0.4])]
    with pytest.raises(DuplicateEntityError, match=r"duplicate entity_id 'dup-7' \(2 rows\)"):
        store.publish(store_url, batches, _meta("2"), keep=3)
    assert _served(store_url, ["a", "x"]) == {"a": (0.1, 1), "x": (None, 1)}
    assert _tables(store_url) == {*CONTROL, "predictions_1"}


@pytest.mark.parametrize("batches", [[], [_batch([], [])]], ids=["no-batches", "zero-rows"])
def test_empty_prediction_set_is_refused(store_url: str, batches: list[pa.RecordBatch]) -> None:
    with pytest.raises(EmptyPredictionsError, match="refusing to publish an empty"):
        store.publish(store_url, batches, _meta(), keep=3)
    assert [s.status for s in store.snapshots(store_url)] == ["failed"]
    assert store.current(store_url) is None


def test_rows_must_match_the_snapshot_metadata_and_have_no_nulls(store_url: str) -> None:
    wrong = _batch(["a"], [0.1], model_version=["9"])
    with pytest.raises(PredictionsInputError, match=r"model_version holds \['9'\]"):
        store.publish(store_url, [wrong], _meta("1"), keep=3)
    with pytest.raises(PredictionsInputError, match="entity_id has null"):
        store.publish(store_url, [_batch(["a", None], [0.1, 0.2])], _meta("1"), keep=3)  # type: ignore[list-item]
    with pytest.raises(PredictionsInputError, match="score has NaN"):
        store.publish(store_url, [_batch(["a", "b"], [0.1, float("nan")])], _meta("1"), keep=3)
    for infinite in (float("inf"), float("-inf")):  # a lookup of them could not answer
        with pytest.raises(PredictionsInputError, match="score has infinite values"):
            store.publish(store_url, [_batch(["a", "b"], [0.1, infinite])], _meta("1"), keep=3)
    assert store.current(store_url) is None
    with pytest.raises(ValueError, match="keep must be at least 1"):
        store.publish(store_url, [_batch(["a"], [0.1])], _meta("1"), keep=0)


def test_readers_see_one_whole_snapshot_during_publishes(store_url: str) -> None:
    ids = _ids(700)
    store.publish(store_url, [_batch(ids, [0.0] * 700)], _meta("0"), keep=2)
    seen: list[set[tuple[float | None, int | None]]] = []
    done = threading.Event()

    def reader() -> None:
        with LookupClient(store_url) as client:
            while not done.is_set():
                seen.append({(r.score, r.snapshot_id) for r in client.get(ids)})

    def wait_until_read(snapshot_id: int) -> None:
        deadline = time.monotonic() + 20
        while not any(snapshot_id == sid for s in seen for _, sid in s):
            assert time.monotonic() < deadline, f"reader never saw snapshot {snapshot_id}"
            time.sleep(0.005)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 4):
            wait_until_read(n)
            store.publish(store_url, [_batch(ids, [float(n)] * 700)], _meta(str(n)), keep=2)
        wait_until_read(4)
    finally:
        done.set()
        thread.join(timeout=30)
    assert all(len(s) == 1 for s in seen)
    assert all(score == snapshot_id - 1 for s in seen for score, snapshot_id in s)


def test_table_names_come_only_from_positive_integer_ids() -> None:
    assert store.table_name(12) == "predictions_12"
    for bad in (0, -1, True, "3"):
        with pytest.raises(ValueError, match="positive integer"):
            store.table_name(bad)  # type: ignore[arg-type]
    with pytest.raises(store.StoreError, match="refusing table name"):
        store_sql._checked_table('predictions_1"; DROP TABLE x; --')


def test_sqlite_engine_uses_wal(tmp_path: Path) -> None:
    engine = store.make_engine(f"sqlite:///{tmp_path / 'new' / 'p.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()
    with pytest.raises(store.StoreError, match="unsupported prediction store 'mysql'"):
        store.make_engine("mysql://u@h/db")


# ---------------------------------------------------------------- the publish step


def _write_predictions(cfg: Config, day: date, parts: list[dict[str, list[object]]]) -> str:
    path = Lake(cfg.lake_root).predictions(day)
    Path(path).mkdir(parents=True)
    for n, part in enumerate(parts):
        size = len(part["entity_id"])
        table = pa.table({
            "entity_id": pa.array(part["entity_id"], pa.string()),
            "score": pa.array(part["score"], pa.float64()),
            "snapshot_date": pa.array([day] * size, pa.date32()),
            "model_name": pa.array(["churn"] * size),
            "model_version": pa.array(part.get("model_version", ["5"] * size)),
            "data_version": pa.array(["abc123"] * size),
            "scored_at": pa.array([SCORED_AT] * size, TS),
        })
        pq.write_table(table, f"{path}/part-{n}.parquet")
    rows = sum(len(part["entity_id"]) for part in parts)
    write_json(manifest_path(path), {  # what a finished score run leaves
        "row_count": rows, "snapshot_date": day.isoformat(), "model_name": "churn",
        "model_version": "5", "data_version": "abc123",
        "lineage": {"mlflow_run_id": "r1", "training_data_version": "t1",
                    "code_version": "c1", "fallback_score": 0.25}})
    return path


def test_step_publishes_a_parquet_predictions_folder(cfg: Config) -> None:
    _write_predictions(cfg, DAY, [{"entity_id": ["u1", "u2"], "score": [0.25, 0.5]},
                                  {"entity_id": ["u3"], "score": [0.75]}])
    result = publish_step.run(cfg, DAY)
    assert result == publish_step.PublishResult(
        snapshot_id=1, table="predictions_1", rows=3, snapshot_date=DAY, model_name="churn",
        model_version="5", data_version="abc123")
    assert _served(cfg.predictions_url, ["u1", "u3", "u9"]) == {
        "u1": (0.25, 1), "u3": (0.75, 1), "u9": (0.25, 1)}  # u9: the training label rate
    (info,) = store.snapshots(cfg.predictions_url)
    assert (info.mlflow_run_id, info.training_data_version, info.code_version) == (
        "r1", "t1", "c1")
    assert Path(cfg.home / "churn" / "predictions.db").exists()  # the use case's own file


def test_step_rerun_keeps_serving_the_same_snapshot(cfg: Config) -> None:
    _write_predictions(cfg, DAY, [{"entity_id": ["u1", "u2"], "score": [0.25, 0.5]}])
    first = publish_step.run(cfg, DAY)
    assert publish_step.run(cfg, DAY) == first
    assert [s.snapshot_id for s in store.snapshots(cfg.predictions_url)] == [1]


def test_step_refuses_mixed_model_versions(cfg: Config) -> None:
    _write_predictions(cfg, DAY, [{"entity_id": ["u1"], "score": [0.1]},
                                  {"entity_id": ["u2"], "score": [0.2], "model_version": ["6"]}])
    with pytest.raises(PredictionsInputError, match=r"model_version holds \['6'\].*says '5'"):
        publish_step.run(cfg, DAY)
    assert [s.status for s in store.snapshots(cfg.predictions_url)] == ["failed"]
    assert store.current(cfg.predictions_url) is None


def test_step_refuses_predictions_of_an_unfinished_score_run(cfg: Config) -> None:
    path = _write_predictions(cfg, DAY, [{"entity_id": ["u1"], "score": [0.1]}])
    write_json(manifest_path(path), {"row_count": 2})
    with pytest.raises(PredictionsInputError, match="hold 1 rows but the score manifest says 2"):
        publish_step.run(cfg, DAY)
    Path(manifest_path(path)).unlink()
    with pytest.raises(PredictionsInputError, match="no manifest: the score run did not finish"):
        publish_step.run(cfg, DAY)
    assert store.snapshots(cfg.predictions_url) == []


def test_step_names_the_missing_predictions_folder(cfg: Config) -> None:
    path = Lake(cfg.lake_root).predictions(DAY)
    with pytest.raises(FileNotFoundError, match=f"no predictions at {path}"):
        publish_step.run(cfg, DAY)


def test_metadata_is_proven_from_parquet_statistics_or_read(cfg: Config) -> None:
    path = _write_predictions(cfg, DAY, [{"entity_id": ["u1"], "score": [0.1]},
                                         {"entity_id": ["u2"], "score": [0.2]}])
    dataset, manifest = publish_step.open_predictions(path)
    meta = publish_step.snapshot_meta(manifest, DAY)
    assert publish_step.statistics_values(dataset, ["model_version", "snapshot_date"]) == {
        "model_version": {"5"}, "snapshot_date": {DAY}}
    assert [b.schema.names for b in publish_step.batches(dataset, meta)] == [
        ["entity_id", "score", "scored_at"]] * 2  # proven: metadata columns not even read
    table = pq.read_table(f"{path}/part-0.parquet")
    pq.write_table(table, f"{path}/part-0.parquet", write_statistics=False)
    dataset, _ = publish_step.open_predictions(path)
    assert publish_step.statistics_values(dataset, ["model_version"]) is None
    assert all("model_version" in b.schema.names for b in publish_step.batches(dataset, meta))


def test_an_older_snapshot_never_replaces_a_newer_one(store_url: str) -> None:
    newer = store.publish(store_url, [_batch(["u1"], [0.5])], _meta("2", date(2026, 3, 2)),
                          keep=5)
    with pytest.raises(OlderSnapshotError, match="refusing to publish 2026-01-01: snapshot "
                                                 f"{newer.snapshot_id} of 2026-03-02 is served"):
        store.publish(store_url, [_batch(["u1"], [0.1])], _meta("1", date(2026, 1, 1)), keep=5)
    assert store.current(store_url).snapshot_id == newer.snapshot_id
    older = store.publish(store_url, [_batch(["u1"], [0.1])], _meta("1", date(2026, 1, 1)),
                          keep=5, allow_older=True)  # the documented way round, explicit
    assert store.current(store_url).snapshot_id == older.snapshot_id


def test_concurrent_publishers_of_the_same_predictions_make_one_snapshot(store_url: str) -> None:
    store.ensure_schema(store.make_engine(store_url))
    started = threading.Event()

    def slow_batches() -> Iterator[pa.RecordBatch]:
        started.set()  # the first publisher holds the publishers' lock while it sleeps
        time.sleep(1.5)
        yield _batch(_ids(3), _scores(3, 0.1))

    results: list[object] = []

    def first() -> None:
        results.append(store.publish(store_url, slow_batches(), _meta(), keep=5,
                                     rows_if_served=3))

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(30)
    second = store.publish(store_url, [_batch(_ids(3), _scores(3, 0.1))], _meta(), keep=5,
                           rows_if_served=3)  # a retry overlapping the first attempt
    thread.join(60)
    assert [s.status for s in store.snapshots(store_url)] == ["published"]  # one, not two
    assert second.snapshot_id == results[0].snapshot_id  # type: ignore[attr-defined]


def test_a_store_s_control_tables_are_created_once_per_process(store_url: str) -> None:
    """store.connected runs the schema's DDL the first time a process meets a store, not on
    every call; a SQLite file deleted and made again gets it again."""
    ddl: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            ddl.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        with store.connected(store_url) as engine:
            assert CONTROL <= set(sa.inspect(engine).get_table_names())
        first = len(ddl)
        assert first > 0  # a fresh store
        with store.connected(store_url), store.connected(store_url):
            pass
        assert len(ddl) == first
        if store_url.startswith("sqlite"):
            Path(sa.make_url(store_url).database or "").unlink()
            with store.connected(store_url) as engine:
                assert CONTROL <= set(sa.inspect(engine).get_table_names())
            assert len(ddl) > first
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
