"""The demo-data generator: determinism, planted bad lines, a real churn signal, drift."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

import pytest

from tests.helpers import CHURN_LOGS

EVENT_TYPES, KINDS, REQUIRED_FIELDS = (CHURN_LOGS.EVENT_TYPES, CHURN_LOGS.KINDS,
                                     CHURN_LOGS.REQUIRED_FIELDS)
generate = CHURN_LOGS.generate

START = date(2026, 1, 1)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _kind(line: str, day: str, seen: set[str]) -> str | None:
    """The planted kind of a raw line, judged in plain Python (None for a good line)."""
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return "malformed_json"
    if any(f not in event for f in REQUIRED_FIELDS):
        return "missing_field"
    props = event["properties"]
    if not isinstance(props, dict) or isinstance(props.get("amount"), str):
        return "wrong_type"
    if event["event_type"] not in EVENT_TYPES:
        return "unknown_event_type"
    if event["ts"][:10] != day:
        return "ts_outside_partition"
    if line in seen:
        return "duplicate_event_id"
    seen.add(line)
    return None


def _events(root: Path) -> list[dict]:
    """Every parseable event of a generated lake, with its file's day index."""
    out = []
    for i, path in enumerate(sorted((root / "raw" / "events").glob("dt=*/events.jsonl"))):
        for line in path.read_text().splitlines():
            out.append({**json.loads(line), "day": i})
    return out


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    args = {"users": 50, "days": 5, "start_date": START, "corrupt_fraction": 0.05}
    first = generate(str(tmp_path / "a"), seed=3, **args)
    generate(str(tmp_path / "b"), seed=3, **args)
    generate(str(tmp_path / "c"), seed=4, **args)
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a == b
    assert len(a) == 6 and a != c
    assert [Path(p).parent.name for p in first.paths] == [
        f"dt=2026-01-0{i}" for i in range(1, 6)
    ]
    assert first.total_lines == sum(len(v.splitlines()) for k, v in a.items() if "jsonl" in k)


def test_planted_counts_match_the_lines(tmp_path: Path) -> None:
    result = generate(str(tmp_path), users=80, days=6, seed=11, start_date=START,
                      corrupt_fraction=0.06)
    planted = json.loads(Path(result.planted_path).read_text())
    assert planted["kinds"] == list(KINDS)
    for path in result.paths:
        day = Path(path).parent.name.removeprefix("dt=")
        seen: set[str] = set()
        found = Counter(_kind(line, day, seen) for line in Path(path).read_text().splitlines())
        expected = planted["days"][day]
        assert {k: found.get(k, 0) for k in KINDS} == expected
        assert sum(planted["missing_field_names"][day].values()) == expected["missing_field"]
        lines = result.lines_per_day[day]
        events = lines - expected["duplicate_event_id"]
        assert sum(expected.values()) == round(0.06 * events)
    assert result.planted == {k: sum(d[k] for d in planted["days"].values()) for k in KINDS}
    assert min(result.planted.values()) >= 4  # every kind is planted


def test_no_corruption_when_fraction_is_zero(tmp_path: Path) -> None:
    result = generate(str(tmp_path), users=30, days=3, seed=1, start_date=START)
    assert set(result.planted.values()) == {0}


def test_churners_fade_before_they_cancel(tmp_path: Path) -> None:
    result = generate(str(tmp_path), users=3000, days=50, seed=5, start_date=START)
    events = _events(tmp_path)
    cancel_day = {e["user_id"]: e["day"] for e in events if e["event_type"] == "cancel"}
    per_user: defaultdict[str, Counter[tuple[str, int]]] = defaultdict(Counter)
    for e in events:
        assert e["day"] <= cancel_day.get(e["user_id"], 99)  # nothing after a cancel
        per_user[e["user_id"]][(e["event_type"], e["day"])] += 1
    assert result.cancels == len(cancel_day)

    def sessions(user: str, first: int, last: int) -> int:
        return sum(per_user[user][("session_start", d)] for d in range(first, last + 1))

    late = [u for u, c in cancel_day.items() if c >= 28]
    stayers = [u for u in per_user if u not in cancel_day and sessions(u, 0, 0)]
    churner_last_week = sum(sessions(u, cancel_day[u] - 7, cancel_day[u] - 1) for u in late)
    stayer_week = sum(sessions(u, 20, 26) for u in stayers)
    assert churner_last_week / len(late) < 0.6 * stayer_week / len(stayers)
    tickets_before = sum(per_user[u][("support_ticket", d)] for u in late
                         for d in range(cancel_day[u] - 14, cancel_day[u]))
    tickets_stayers = sum(per_user[u][("support_ticket", d)] for u in stayers
                          for d in range(13, 27))
    assert tickets_before / len(late) > 2 * tickets_stayers / len(stayers)
    alive_at_21 = {u for u in per_user if any(d <= 21 for _, d in per_user[u])} - {
        u for u, c in cancel_day.items() if c <= 21
    }
    rate = sum(1 for u in alive_at_21 if 21 < cancel_day.get(u, 99) <= 35) / len(alive_at_21)
    assert 0.06 < rate < 0.22


def test_drift_changes_only_days_from_drift_day(tmp_path: Path) -> None:
    args = {"users": 400, "days": 8, "seed": 2, "start_date": START}
    plain = generate(str(tmp_path / "plain"), **args)
    drifted = generate(str(tmp_path / "drift"), drift_day=4, **args)
    same = [Path(a).read_bytes() == Path(b).read_bytes()
            for a, b in zip(plain.paths, drifted.paths, strict=True)]
    assert same == [True] * 4 + [False] * 4

    def tv_share(root: Path) -> float:
        late = [e for e in _events(root) if e["day"] >= 4]
        return sum(e["properties"]["device"] == "tv" for e in late) / len(late)

    assert tv_share(tmp_path / "drift") > tv_share(tmp_path / "plain") + 0.1


@pytest.mark.parametrize("bad", [{"users": 0}, {"days": 0}, {"corrupt_fraction": 1.5}])
def test_rejects_bad_arguments(tmp_path: Path, bad: dict) -> None:
    args = {"users": 5, "days": 2, "seed": 1, "start_date": START, **bad}
    with pytest.raises(ValueError, match="users >= 1"):
        generate(str(tmp_path), **args)
