"""The precast view's pages as functions: freshness against a cron schedule, what a rollback
may target, and that whatever the store holds is shown as text, never as markup."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from precast.gate.champions import ChampionPeriod
from precast.store import SnapshotInfo
from precast.ui import pages
from precast.ui.status import StoreView

NOW = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)


def _snapshot(snapshot_id: int, version: str, *, current: bool = False,
              status: str = "published", published: datetime = NOW) -> SnapshotInfo:
    return SnapshotInfo(snapshot_id, date(2026, 12, 7), f"predictions_{snapshot_id}", "m", version,
                        f"data-{snapshot_id}", None, None, None, None, 10, published, published,
                        status, None, published, "publish", "published", current)


def _champion(version: str, reason: str = "passed") -> ChampionPeriod:
    return ChampionPeriod("m", version, NOW - timedelta(days=1), None, "gate", "gate", reason,
                          None)


def test_a_snapshot_is_stale_once_a_whole_scheduled_run_passed_without_a_publish() -> None:
    daily = "0 6 * * *"  # ran at 06:00 today and yesterday
    fresh, text = pages.freshness(_snapshot(1, "1", published=NOW - timedelta(hours=5)),
                                  daily, NOW)
    assert not fresh and text.startswith("fresh")
    # Published before today's run: late, but that run may still be publishing.
    late, _ = pages.freshness(_snapshot(1, "1", published=NOW - timedelta(hours=20)), daily, NOW)
    assert not late
    stale, text = pages.freshness(_snapshot(1, "1", published=NOW - timedelta(hours=30)),
                                  daily, NOW)
    assert stale and text.startswith("stale") and "2026-12-06 06:00 UTC" in text
    assert pages.freshness(None, daily, NOW) == (False, "nothing published")
    assert pages.freshness(_snapshot(1, "1"), "not cron", NOW)[1].endswith("not a cron expression")


def test_stale_is_red_on_the_overview() -> None:
    view = StoreView([_champion("1")], [_snapshot(1, "1", current=True)])
    row = pages.UseCaseRow("churn", view, None, {}, True, "stale: published 2 d ago")
    html = pages.overview("/precast", [row], NOW)
    assert '<td class="stale">stale: published 2 d ago</td>' in html
    assert ".stale { color: #c62828" in html


def test_rollback_targets_are_the_retained_snapshots_not_served() -> None:
    view = StoreView([_champion("2")], [
        _snapshot(4, "2", current=True), _snapshot(3, "2"), _snapshot(2, "1"),
        _snapshot(1, "1", status="retired")])
    assert pages.rollback_targets(view) == {
        "snapshot:3": "serve snapshot #3", "snapshot:2": "serve snapshot #2",
        "model:1": "serve v1 and make it the champion"}
    assert pages.rollback_targets(StoreView()) == {}


def test_what_the_store_holds_is_escaped() -> None:
    evil = '<script>alert("x")</script>'
    view = StoreView([_champion("1", reason=evil)],
                     [replace(_snapshot(1, "1", current=True), activation_reason=evil)],
                     [{"snapshot_date": "2026-12-07", "severity": "critical", "rule": evil,
                       "subject": evil, "message": evil}], 1, 1)
    page = pages.UseCasePage("churn", view, {}, [], [], False, "fresh", "t", True, ["churn"],
                             "/precast")
    html = pages.use_case(page, NOW)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_trend_needs_two_points_and_draws_them_oldest_to_newest() -> None:
    assert "too few points" in pages.trend_svg([0.5])
    svg = pages.trend_svg([0.7, None, 0.8, 0.75])
    points = svg.split('points="')[1].split('"')[0].split()
    assert len(points) == 3 and points[0].startswith("2.0,")
