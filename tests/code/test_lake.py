"""Lake files: manifests are written whole or not at all; what precast writes is private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from precast.cli.main import main
from precast.lake import MANIFEST, read_json, write_bytes, write_json
from tests.helpers import CHURN


def test_a_manifest_is_replaced_whole_and_a_failed_write_leaves_no_partial_file(
        tmp_path: Path) -> None:
    path = str(tmp_path / "events" / "dt=2026-03-01" / MANIFEST)
    write_json(path, {"row_count": 1})
    write_json(path, {"row_count": 2})
    assert read_json(path) == {"row_count": 2}
    assert sorted(p.name for p in Path(path).parent.iterdir()) == [MANIFEST]
    blocked = tmp_path / "blocked"
    (blocked / "inside").mkdir(parents=True)  # a folder where the file should go
    with pytest.raises(OSError):
        write_bytes(str(blocked), b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "events"]


def test_what_the_cli_writes_under_precast_home_is_private(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("PRECAST_HOME", str(home))
    assert main(["--use-case", str(CHURN.parent), "demo-data", "--users", "5", "--days", "1"]) == 0
    written = [p for p in home.rglob("*")]
    assert written and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in written), [
        (str(p), oct(p.stat().st_mode)) for p in written if p.stat().st_mode & 0o077]
