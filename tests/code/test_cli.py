"""The CLI: one-line reasons on stderr and meaningful exit codes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from precast import pipeline
from precast.cli.main import main
from precast.config import load_config
from precast.errors import EXIT_BAD_CONFIG
from tests.helpers import CHURN


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The churn example's use case, its home in a temporary folder."""
    monkeypatch.setenv("PRECAST_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PRECAST_CONFIG", str(CHURN.parent))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_a_use_case_without_a_generator_exits_2_naming_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "precast.yaml").write_text("name: bare\n")
    assert main(["demo-data", "--use-case", str(tmp_path)]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err.strip()
    assert err == ("precast: config error at demo.generator: use case bare names no data "
                   "generator (a .py file in its folder, or a module)")


def test_demo_data_writes_raw_days(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-data", "--users", "20", "--days", "3", "--seed", "1"]) == 0
    assert "over 3 days" in capsys.readouterr().out
    assert len(list((home / "lake" / "churn" / "raw" / "events").glob("dt=*/events.jsonl"))) == 3


def _raw_days(home: Path) -> list[str]:
    """The raw-event day partitions of the churn lake, oldest first."""
    raw = home / "lake" / "churn" / "raw" / "events"
    return sorted(p.parent.name.removeprefix("dt=") for p in raw.glob("dt=*/events.jsonl"))


def test_demo_data_until_ends_the_logs_on_that_day(home: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-data", "--users", "5", "--days", "3", "--until", "2026-07-04"]) == 0
    assert _raw_days(home) == ["2026-07-02", "2026-07-03", "2026-07-04"]
    out = capsys.readouterr().out.strip()
    assert out.endswith(f"over 3 days (2026-07-02 to 2026-07-04) to "
                        f"{home / 'lake' / 'churn' / 'raw' / 'events'}")


def test_demo_data_until_today_ends_the_logs_on_the_utc_date(home: Path) -> None:
    before = datetime.now(UTC).date()
    assert main(["demo-data", "--users", "5", "--days", "2", "--until", "today"]) == 0
    after = datetime.now(UTC).date()
    days = _raw_days(home)
    assert len(days) == 2
    assert days[-1] in {before.isoformat(), after.isoformat()}  # a run across midnight
    assert date.fromisoformat(days[-1]) - date.fromisoformat(days[0]) == timedelta(days=1)


def test_demo_data_until_with_start_date_is_refused(home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["demo-data", "--until", "today", "--start-date", "2026-01-01"])
    assert refused.value.code == 2
    assert ("error: argument --start-date: not allowed with argument --until"
            in capsys.readouterr().err)
    assert _raw_days(home) == []


def test_demo_data_until_must_be_a_date_or_today(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo-data", "--until", "tomorrow"])
    assert "argument --until: not a date (YYYY-MM-DD): 'tomorrow'" in capsys.readouterr().err


def test_failing_step_exits_1_with_one_line(home: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    assert main(["run", "publish", "--date", "2026-03-01"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("precast: run failed: FileNotFoundError: no predictions at")


def test_lookup_before_any_publish_is_a_clear_error(home: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lookup", "u000001"]) == 1
    assert "NoSnapshotError" in capsys.readouterr().err


def test_bad_config_exits_2(home: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PRECAST_GATE__TOLERANCE", "-1")
    assert main(["status"]) == 2
    assert capsys.readouterr().err.strip() == (
        "precast: config error at gate.tolerance: Input should be greater than or equal to 0")


def test_chain_start_must_belong_to_the_chain(home: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "predict", "--date", "2026-03-01", "--from", "train"]) == 1
    assert "not in the predict chain" in capsys.readouterr().err


def test_the_daily_chain_starts_with_extract_and_ends_with_publish(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pipeline.CHAINS["daily"] == ("extract", "validate_events", *pipeline.PREDICT)
    assert main(["run", "daily", "--date", "2026-03-01", "--from", "train"]) == 1
    assert "not in the daily chain" in capsys.readouterr().err
    assert main(["run", "daily", "--date", "2026-03-01"]) == 1  # no logs: extract fails first
    assert "no raw events for 2026-03-01" in capsys.readouterr().err
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(home)})
    runs = pipeline.record_path(cfg, date(2026, 3, 1), "extract").parent
    assert [p.name for p in runs.iterdir()] == ["extract.json"]


@pytest.mark.postgres
def test_a_password_in_the_store_url_never_reaches_the_console_or_a_run_record(
        home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    secret = "hunter2-" + home.name  # trust auth: PostgreSQL accepts any password here
    monkeypatch.setenv("PRECAST_STORES__PREDICTIONS_URL",
                       pg_url.replace("postgres@", f"postgres:{secret}@"))
    assert main(["lookup", "u000001"]) == 1
    err = capsys.readouterr().err
    assert "NoSnapshotError" in err and "postgres:***@" in err and secret not in err
    cfg = load_config(CHURN, environ={"PRECAST_HOME": str(home)})
    url = pg_url.replace("postgres@", f"postgres:{secret}@")
    path = pipeline.record(cfg, date(2026, 3, 1), "gate", {"status": "failed",
                                                          "error": f"no store at {url}"})
    assert secret not in path.read_text() and "postgres:***@" in path.read_text()
