"""`precast check` on real Spark: a sample of the newest raw day classified by the mapping,
the feature and label SQL compiled on it, config names checked, nothing written."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from precast.cli import check
from precast.cli.main import main
from precast.config import Config, load_config
from precast.lake import Lake
from precast.use_case import init
from tests.helpers import CHURN, CHURN_LOGS, use_case_copy

generate = CHURN_LOGS.generate
START = date(2026, 1, 1)
NEWEST = START + timedelta(days=2)


@pytest.fixture(scope="module")
def lake_cfg(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Three generated days with planted bad lines (read only by these tests)."""
    home = tmp_path_factory.mktemp("check") / "home"
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(home)})
    generate(cfg.lake_root, users=300, days=3, seed=5, start_date=START, corrupt_fraction=0.08)
    return cfg


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_a_good_use_case_is_classified_compiled_and_nothing_is_written(
        spark, lake_cfg: Config) -> None:
    before = _files(lake_cfg.home)
    report = check.run(lake_cfg, spark, sample=200)
    assert _files(lake_cfg.home) == before
    assert report.day == NEWEST and report.sampled == 200 and report.problems == []
    assert report.kept + sum(report.reasons.values()) == 200
    raw = Path(Lake(lake_cfg.lake_root).raw_events(NEWEST), "events.jsonl").read_text()
    lines = raw.splitlines()
    for reason, (number, example) in report.examples.items():
        assert number <= 200 and lines[number - 1].startswith(example.rstrip("…")), reason
    assert report.clean_columns[:3] == [("event_id", "string"), ("user_id", "string"),
                                        ("ts", "timestamp")]
    returned = dict(report.feature_columns)
    assert {"user_id", "snapshot_date", "sessions_7d", "plan"} <= returned.keys()
    assert dict(report.label_columns)["label"] == "int"


def test_a_wrong_path_and_config_names_the_sql_lacks_are_each_one_line(
        spark, lake_cfg: Config) -> None:
    cfg = lake_cfg.with_overrides({"events.attributes.plan.field": "props.plan",  # optional:
                                   "events.attributes.plan.required": False,  # kept, absent
                                   "gate.slices": ["country", "region"]})
    report = check.run(cfg, spark, sample=200)
    assert report.problems == [
        f"events mapping: plan (field 'props.plan') is absent from all {report.kept} kept lines",
        "gate.slices names 'region', which features.sql does not return"]


def test_a_key_field_absent_from_the_logs_is_named(spark, lake_cfg: Config) -> None:
    cfg = lake_cfg.with_overrides({"events.key.field": "customer.id"})
    report = check.run(cfg, spark, sample=100)
    assert report.kept == 0 and report.problems[0].startswith(
        "no sampled line was kept; the most common reason is missing_field:customer.id")


def test_the_cli_prints_the_report_and_exits_1_on_problems(
        spark, lake_cfg: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = use_case_copy(tmp_path / "uc", {"home": str(lake_cfg.home)})
    assert main(["check", "--config", str(path), "--sample", "300"]) == 0
    out = capsys.readouterr().out
    assert f"raw day {NEWEST}" in out and "300 lines sampled" in out
    assert "no problems" in out and "e.g. line" in out
    use_case_copy(tmp_path / "uc", {"home": str(lake_cfg.home),
                                    "features": {"categorical": ["plan", "colour"]}})
    assert main(["check", "--config", str(path)]) == 1
    assert "features.categorical names 'colour', which features.sql does not return" in (
        capsys.readouterr().out)


def test_a_fresh_skeleton_checks_clean_on_logs_of_its_shape(
        spark, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "my-logs"
    assert main(["init", str(folder), "--name", "mine"]) == 0
    assert "wrote" in capsys.readouterr().out
    cfg = load_config(folder, environ={"PRECAST_HOME": str(tmp_path / "home")})
    lines = [{"user": {"id": f"e{i % 7}"}, "ts": f"2026-03-01T{i % 24:02d}:00:00Z",
              "type": "view", "details": {"amount": i / 2}} for i in range(40)]
    raw = Path(Lake(cfg.lake_root).raw_events(date(2026, 3, 1)))
    raw.mkdir(parents=True)
    (raw / "events.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    report = check.run(cfg, spark)
    assert (report.kept, report.problems) == (40, [])
    assert [c for c, _ in report.feature_columns] == [
        "entity_id", "snapshot_date", "events_short", "events_long", "active_days_long",
        "amount_long", "days_since_last_event"]
    assert [c for c, _ in report.label_columns] == ["entity_id", "snapshot_date", "label"]
    with pytest.raises(FileExistsError, match="not overwriting"):
        init(folder)
