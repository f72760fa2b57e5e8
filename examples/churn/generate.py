"""Synthetic raw logs for a subscription app, with a real churn signal and planted bad lines.

The churn example's `demo.generator`: run it with `precast --use-case examples/churn
demo-data --users N --days D --seed S`, or call :func:`generate`.
Users have a latent churn risk; a user who cancels emits a `cancel` event and nothing
after it, and in the two to three weeks before it mostly shows fewer sessions, plays
and active days, more support tickets and plan downgrades. From `drift_day` on the
behaviour drifts: activity rises, more events come from TVs, and the pre-churn signal
moves to plays, page views and the web device. Corrupt lines are planted per day in
exact, recorded numbers (`raw/events/_planted.json`) so that extract can be checked.
Same arguments, same bytes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from precast.lake import Lake, write_bytes, write_json

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "session_start", "page_view", "play", "purchase", "support_ticket", "plan_change", "cancel",
)
PLANS = ("free", "basic", "premium")
DEVICES = ("ios", "android", "web", "tv")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN")
REQUIRED_FIELDS = ("event_id", "user_id", "ts", "event_type")
KINDS = (
    "malformed_json", "missing_field", "wrong_type",
    "unknown_event_type", "ts_outside_partition", "duplicate_event_id",
)
PLANTED_FILE = "_planted.json"

_SESSION, _PAGE_VIEW, _PLAY, _PURCHASE, _TICKET, _PLAN_CHANGE, _CANCEL = range(7)
_DEVICE_MIX = np.array([0.35, 0.35, 0.2, 0.1])
_COUNTRY_MIX = np.array([0.35, 0.12, 0.12, 0.1, 0.16, 0.15])
_COUNTRY_HAZARD = np.array([1.0, 0.9, 0.85, 0.95, 1.25, 1.3])
_PURCHASE_P = np.array([0.02, 0.05, 0.08])
_MIDDLE = [  # everything between the timestamp and the amount, by kind/plan/device/country
    f'","event_type":"{k}","properties":{{"plan":"{p}","device":"{d}","country":"{c}","amount":'
    for k in EVENT_TYPES for p in PLANS for d in DEVICES for c in COUNTRIES
]
_CLOCK = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}Z" for s in range(86_400)]


@dataclass(frozen=True)
class DemoDataResult:
    """What `generate` wrote: the day files, lines per day and planted bad lines per kind."""

    paths: tuple[str, ...]
    lines_per_day: dict[str, int]
    planted: dict[str, int]
    planted_path: str
    users: int
    cancels: int

    @property
    def total_lines(self) -> int:
        return sum(self.lines_per_day.values())


@dataclass(frozen=True)
class _Population:
    """Latent, per-user traits (arrays of length `users`)."""

    signup: np.ndarray      # day index of the first day the user exists
    churn: np.ndarray       # day index of the cancel event (may lie after the period)
    window: np.ndarray      # days of pre-churn decay before `churn` (0 = sudden churn)
    p_active: np.ndarray    # baseline probability of being active on a day
    sessions: np.ndarray    # baseline extra sessions per active day (Poisson mean)
    plays: np.ndarray       # plays per session
    tickets: np.ndarray     # support tickets per day alive
    device: np.ndarray      # primary device index
    country: np.ndarray     # country index
    plan: np.ndarray        # plan index on the first day


@dataclass(frozen=True)
class _DayEvents:
    """One day's events as parallel arrays, sorted by time."""

    user: np.ndarray
    kind: np.ndarray
    second: np.ndarray
    plan: np.ndarray
    device: np.ndarray
    country: np.ndarray
    amount: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _population(rng: np.random.Generator, users: int, days: int) -> _Population:
    """Draw latent risk, engagement, sign-up and churn days for every user."""
    risk = rng.standard_normal(users)
    engagement = -0.6 * risk + 0.8 * rng.standard_normal(users)
    existing = rng.random(users) < 0.6
    signup = np.where(existing, 0, rng.integers(1, max(days, 2), users))
    country = rng.choice(len(COUNTRIES), users, p=_COUNTRY_MIX)
    hazard = np.clip(0.006 * np.exp(0.9 * risk) * _COUNTRY_HAZARD[country], 1e-4, 0.25)
    churn = signup + rng.geometric(hazard)
    window = np.where(rng.random(users) < 0.15, 0, rng.integers(10, 25, users))
    logits = np.stack([0.3 + 0.9 * risk, np.full(users, 0.2), -0.3 - 0.7 * risk], axis=1)
    cumulative = np.cumsum(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), axis=1)
    plan = (rng.random(users)[:, None] > cumulative[:, :-1]).sum(axis=1)
    return _Population(
        signup=signup, churn=churn, window=window,
        p_active=_sigmoid(-0.3 + 1.0 * engagement),
        sessions=0.35 * np.exp(0.3 * engagement),
        plays=0.9 * np.exp(0.3 * rng.standard_normal(users)),
        tickets=0.012 * np.exp(0.5 * risk),
        device=rng.choice(len(DEVICES), users, p=_DEVICE_MIX),
        country=country, plan=plan,
    )


def _progress(pop: _Population, t: int) -> np.ndarray:
    """How far each user is into the pre-churn decay on day `t`: 0 (none) to 1 (cancel day)."""
    start = pop.churn - pop.window
    frac = (t - start + 1) / np.maximum(pop.window, 1)
    return np.where((pop.window > 0) & (t >= start), np.clip(frac, 0.0, 1.0), 0.0)


def _next_plan(
    rng: np.random.Generator, plan: np.ndarray, prog: np.ndarray, alive: np.ndarray, drifted: bool
) -> np.ndarray:
    """Plans after day-`t` changes: random moves, plus downgrades before churn (pre-drift)."""
    n = plan.size
    random_move = rng.random(n) < 0.006
    step = np.where(rng.random(n) < 0.5, 1, -1)
    step = np.where((plan + step < 0) | (plan + step > 2), -step, step)
    downgrade = (rng.random(n) < (0.0 if drifted else 0.06) * prog) & (plan > 0)
    new = np.where(random_move, plan + step, plan)
    new = np.where(downgrade, plan - 1, new)
    return np.where(alive, new, plan)


def _day_counts(
    rng: np.random.Generator, pop: _Population, t: int, plan: np.ndarray, changed: np.ndarray,
    drifted: bool,
) -> np.ndarray:
    """Event counts per user and event type for day `t`, shape (users, 7)."""
    n = pop.signup.size
    alive = (pop.signup <= t) & (t <= pop.churn)
    prog = _progress(pop, t)
    if drifted:
        p_act = np.minimum(pop.p_active * 1.25, 0.95) * (1 - 0.1 * prog)
        sess, play_mult, pv_mult = pop.sessions * 1.3, 1 - 0.9 * prog, 1 + 2.5 * prog
        ticket = np.ones_like(prog)
    else:
        p_act = pop.p_active * (1 - 0.85 * prog)
        sess, play_mult = pop.sessions * (1 - 0.5 * prog), 1 - 0.4 * prog
        pv_mult = np.ones_like(prog)
        ticket = 1 + 6 * prog
    counts = np.zeros((n, 7), dtype=np.int64)
    counts[:, _TICKET] = rng.poisson(pop.tickets * ticket) * alive
    counts[:, _PLAN_CHANGE] = changed & alive
    counts[:, _CANCEL] = alive & (pop.churn == t)
    forced = (counts[:, [_TICKET, _PLAN_CHANGE, _CANCEL]].sum(axis=1) > 0) | (pop.signup == t)
    active = alive & ((rng.random(n) < p_act) | forced)
    counts[:, _SESSION] = (1 + rng.poisson(sess)) * active
    counts[:, _PAGE_VIEW] = rng.poisson(0.8 * counts[:, _SESSION] * pv_mult)
    counts[:, _PLAY] = rng.poisson(counts[:, _SESSION] * pop.plays * play_mult)
    counts[:, _PURCHASE] = rng.binomial(counts[:, _SESSION], _PURCHASE_P[plan] * (1 - 0.5 * prog))
    return counts


def _day_events(
    rng: np.random.Generator, pop: _Population, t: int, counts: np.ndarray, plan: np.ndarray,
    drifted: bool,
) -> _DayEvents:
    """Expand per-user counts into events with times, devices, plans and amounts."""
    n = counts.shape[0]
    user = np.repeat(np.tile(np.arange(n), 7), counts.T.ravel())
    kind = np.repeat(np.repeat(np.arange(7), n), counts.T.ravel())
    start = np.asarray(rng.integers(6 * 3600, 22 * 3600, n))
    second = start[user] + rng.integers(0, 2 * 3600, user.size) + np.where(kind == _CANCEL, 1800, 0)
    second = np.minimum(second, 86_399)
    device = np.where(rng.random(user.size) < 0.85, pop.device[user],
                      rng.choice(len(DEVICES), user.size, p=_DEVICE_MIX))
    if drifted:
        to_web = rng.random(user.size) < 0.7 * _progress(pop, t)[user]
        device = np.where(rng.random(user.size) < 0.25, 3, np.where(to_web, 2, device))
    amount = np.where(kind == _PURCHASE,
                      np.round(np.exp(rng.normal(1.2 + 0.4 * plan[user], 0.5)), 2) + 0.99, np.nan)
    order = np.lexsort((kind, user, second))
    return _DayEvents(user=user[order], kind=kind[order], second=second[order],
                      plan=plan[user][order], device=device[order],
                      country=pop.country[user][order], amount=amount[order])


def _format_lines(ev: _DayEvents, day: date, user_ids: Sequence[str]) -> list[str]:
    """One JSON line per event, in the raw contract's field order."""
    prefix, ymd = f'{{"event_id":"e{day:%Y%m%d}-', day.isoformat()
    middle = (ev.kind * 72 + ev.plan * 24 + ev.device * 6 + ev.country).tolist()
    amounts = ["null"] * ev.kind.size
    for i in np.flatnonzero(ev.kind == _PURCHASE).tolist():
        amounts[i] = f"{ev.amount[i]:.2f}"
    return [
        f'{prefix}{i:07d}","user_id":"{user_ids[u]}","ts":"{ymd}T{_CLOCK[s]}{_MIDDLE[m]}{a}}}}}'
        for i, (u, s, m, a) in enumerate(
            zip(ev.user.tolist(), ev.second.tolist(), middle, amounts, strict=True)
        )
    ]


def _kind_quota(total: int, t: int) -> dict[str, int]:
    """Split `total` planted lines evenly over the kinds, rotating the remainder by day."""
    base, rest = divmod(total, len(KINDS))
    return {k: base + ((i - t) % len(KINDS) < rest) for i, k in enumerate(KINDS)}


def _corrupt_line(kind: str, line: str, j: int, rng: np.random.Generator) -> tuple[str, str]:
    """A bad version of a good line for one kind; returns (line, missing field name or '')."""
    if kind == "malformed_json":
        return line[: int(rng.integers(1, len(line) - 1))], ""
    event: dict[str, Any] = json.loads(line)
    missing = ""
    if kind == "missing_field":
        missing = REQUIRED_FIELDS[j % len(REQUIRED_FIELDS)]
        del event[missing]
    elif kind == "wrong_type" and j % 2 == 0:
        event["properties"]["amount"] = ("n/a", "12,50", "free")[j // 2 % 3]
    elif kind == "wrong_type":
        event["properties"] = ("plan=basic;device=ios", ["premium", "tv"])[j // 2 % 2]
    elif kind == "unknown_event_type":
        event["event_type"] = ("login", "app_crash", "refund", "rate_app")[j % 4]
    elif kind == "ts_outside_partition":
        shift = timedelta(days=int(rng.choice([-3, -2, -1, 1, 2, 3])))
        day = date.fromisoformat(event["ts"][:10]) + shift
        event["ts"] = f"{day.isoformat()}{event['ts'][10:]}"
    return json.dumps(event, separators=(",", ":")), missing


def _plant(
    lines: list[str], kinds: np.ndarray, fraction: float, rng: np.random.Generator, t: int
) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Replace or duplicate a deterministic sample of lines (never a cancel) with bad ones."""
    eligible = np.flatnonzero(kinds != _CANCEL)
    quota = _kind_quota(min(int(round(fraction * len(lines))), eligible.size), t)
    picked = rng.choice(eligible, sum(quota.values()), replace=False).tolist()
    out, missing_names, duplicates = list(lines), dict.fromkeys(REQUIRED_FIELDS, 0), []
    for kind in KINDS:
        for j in range(quota[kind]):
            idx = picked.pop()
            if kind == "duplicate_event_id":
                duplicates.append(idx)
                continue
            out[idx], missing = _corrupt_line(kind, lines[idx], t + j, rng)
            if missing:
                missing_names[missing] += 1
    for idx in sorted(duplicates, reverse=True):
        out.insert(idx + 1, lines[idx])
    return out, quota, missing_names


def _write_text(path: str, lines: list[str]) -> None:
    """Write lines (newline-terminated) to a lake path, creating parent folders."""
    write_bytes(path, ("\n".join(lines) + "\n").encode() if lines else b"")


def _simulate_day(
    rng: np.random.Generator, pop: _Population, t: int, plan: np.ndarray, drifted: bool
) -> tuple[_DayEvents, np.ndarray]:
    """One day of behaviour: plan changes, then events. Returns events and the new plans."""
    alive = (pop.signup <= t) & (t <= pop.churn)
    new_plan = _next_plan(rng, plan, _progress(pop, t), alive, drifted)
    counts = _day_counts(rng, pop, t, new_plan, new_plan != plan, drifted)
    return _day_events(rng, pop, t, counts, new_plan, drifted), new_plan


def generate(
    lake_root: str, users: int, days: int, seed: int, start_date: date,
    corrupt_fraction: float = 0.0, drift_day: int | None = None, entity_prefix: str = "u",
) -> DemoDataResult:
    """Write `days` daily raw-event files for `users` users under `{lake_root}/raw/events`.

    `drift_day` is a 0-based day index. Files of the generated days and `_planted.json`
    are replaced; other days already in the lake are left alone.
    """
    if users < 1 or days < 1 or not 0.0 <= corrupt_fraction <= 1.0:
        raise ValueError("need users >= 1, days >= 1 and 0 <= corrupt_fraction <= 1")
    rng = np.random.default_rng(seed)
    pop = _population(rng, users, days)
    user_ids = [f"{entity_prefix}{i:06d}" for i in range(1, users + 1)]
    lake, plan = Lake(lake_root), pop.plan
    paths, lines_per_day, planted, missing = [], {}, {}, {}
    for t in range(days):
        day = start_date + timedelta(days=t)
        drifted = drift_day is not None and t >= drift_day
        events, plan = _simulate_day(rng, pop, t, plan, drifted)
        lines, quota, names = _plant(
            _format_lines(events, day, user_ids), events.kind, corrupt_fraction,
            np.random.default_rng([seed, t, 7919]), t,
        )
        path = f"{lake.raw_events(day)}/events.jsonl"
        _write_text(path, lines)
        paths.append(path)
        lines_per_day[day.isoformat()], planted[day.isoformat()] = len(lines), quota
        missing[day.isoformat()] = names
    return _finish(lake, paths, lines_per_day, planted, missing, pop, days, seed)


def _finish(
    lake: Lake, paths: list[str], lines_per_day: dict[str, int], planted: dict[str, dict[str, int]],
    missing: dict[str, dict[str, int]], pop: _Population, days: int, seed: int,
) -> DemoDataResult:
    """Write `_planted.json`, log a summary and build the result."""
    planted_path = f"{lake.raw_events()}/{PLANTED_FILE}"
    totals = {k: sum(day[k] for day in planted.values()) for k in KINDS}
    write_json(planted_path, {
        "seed": seed, "kinds": list(KINDS), "days": planted, "missing_field_names": missing,
        "lines": lines_per_day, "totals": totals,
    })
    cancels = int((pop.churn < days).sum())
    log.info("demo data: %d users, %d days, %d lines, %d cancels, planted %s",
             pop.signup.size, days, sum(lines_per_day.values()), cancels, totals)
    return DemoDataResult(paths=tuple(paths), lines_per_day=lines_per_day, planted=totals,
                          planted_path=planted_path, users=int(pop.signup.size), cancels=cancels)
