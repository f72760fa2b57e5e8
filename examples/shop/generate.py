"""Synthetic order logs of an online shop, with a learnable 30-day spend and planted bad lines.

Run it with `precast demo-data --config examples/shop/precast.yaml` (this file is the use
case's `demo.generator`) or call :func:`generate`. Same arguments, same bytes.

The log is deliberately unlike the churn example's: no event id (extract derives one from
the line's content), the time `at` in epoch seconds, the customer in `customer`, the kind in
`type`, a `session` object on every line and an `order` object on orders and returns:

    {"customer":"c000042","at":1767312000,"type":"order",
     "session":{"device":"mobile","channel":"email"},
     "order":{"total":37.50,"items":3,"category":"books","discount":false}}

Customers have latent traits: how often they visit, how often a visit ends in an order,
basket size and a category mix (electronics baskets cost more than books). Some become
inactive: their activity fades over one to three weeks, then they emit nothing. So the spend
of the next 30 days follows from recent visits, cart adds, orders, spend, favourite category
and recency. Returns repeat an earlier order's details a few days later. From `drift_day` on
(a 0-based day index) prices rise by a quarter and more sessions come from mobiles.

A customer's events of one day get distinct, increasing seconds (visit, searches, cart adds,
orders, reviews, returns), so no two good lines are equal and none collapses as a duplicate
of another. Corrupt lines replace or repeat a deterministic sample of good ones, drawn from
their own random stream (the good lines do not depend on `corrupt_fraction`), and are
recorded per day and exact quarantine reason in `raw/events/_planted.json`.
"""

# No `from __future__ import annotations`: the file may be loaded by path (demo.generator)
# without a sys.modules entry, and dataclasses then need annotations that are not strings.
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Self

import numpy as np

from precast.lake import Lake, write_bytes, write_json

log = logging.getLogger(__name__)

EVENT_TYPES = ("visit", "search", "cart_add", "order", "review", "return")
CATEGORIES = ("books", "fashion", "home", "electronics", "beauty", "grocery")
DEVICES = ("mobile", "desktop", "tablet")
CHANNELS = ("direct", "search", "email", "social", "ads")
PLANTED_FILE = "_planted.json"
# Planted bad lines, in the order quotas are handed out: the exact reason extract gives each.
PLANTED_REASONS = (
    "malformed_json", "wrong_type:order.total", "wrong_type:at", "missing_field:customer",
    "duplicate_event_id", "wrong_type:order.items", "unknown_event_type",
    "ts_outside_partition", "invalid_value:channel", "missing_field:at", "wrong_type:session",
)

_VISIT, _SEARCH, _CART, _ORDER, _REVIEW, _RETURN = range(6)
_PRICE = np.array([14.0, 38.0, 29.0, 95.0, 19.0, 9.0])  # mean item price by category
_RETURN_P = np.array([0.03, 0.22, 0.08, 0.10, 0.05, 0.01])  # share of orders returned
_DEVICE_MIX = np.array([0.55, 0.35, 0.10])
_CHANNEL_MIX = np.array([0.35, 0.25, 0.15, 0.15, 0.10])
_SESSION = [f'"session":{{"device":"{d}","channel":"{c}"}}' for d in DEVICES for c in CHANNELS]


@dataclass(frozen=True)
class ShopDataResult:
    """What `generate` wrote: day files, lines per day, planted bad lines per reason."""

    paths: tuple[str, ...]
    lines_per_day: dict[str, int]
    planted: dict[str, int]
    planted_path: str
    users: int
    inactive: int  # customers who went quiet within the generated days

    @property
    def total_lines(self) -> int:
        return sum(self.lines_per_day.values())


@dataclass(frozen=True)
class _Customers:
    """Latent, per-customer traits (arrays of length `users`)."""

    signup: np.ndarray      # day index of the first day the customer exists
    lapse: np.ndarray       # day index from which the customer is inactive
    fade: np.ndarray        # days of fading activity before `lapse`
    p_visit: np.ndarray     # probability of visiting on a day
    conversion: np.ndarray  # probability that a visit ends in an order
    cart_rate: np.ndarray   # cart adds per visit, besides those of orders
    basket: np.ndarray      # extra items per order (Poisson mean)
    price_level: np.ndarray  # budget (< 1) or premium (> 1) shopper: multiplies item prices
    mix: np.ndarray         # cumulative category mix, shape (users, categories)
    device: np.ndarray      # primary device index
    channel: np.ndarray     # primary channel index


@dataclass(frozen=True)
class _Orders:
    """Order details as parallel arrays: customer, total, items, category, discount."""

    customer: np.ndarray
    total: np.ndarray
    items: np.ndarray
    category: np.ndarray
    discount: np.ndarray

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in _ORDER_FIELDS))

    def take(self, index: np.ndarray) -> Self:
        return type(self)(*(getattr(self, f)[index] for f in _ORDER_FIELDS))


_ORDER_FIELDS = ("customer", "total", "items", "category", "discount")
_NO_ORDERS = _Orders(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64),
                     np.zeros(0, np.int64), np.zeros(0, bool))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def _customers(rng: np.random.Generator, users: int, days: int) -> _Customers:
    """Draw every customer's traits, sign-up day and the day they go quiet."""
    engagement = rng.standard_normal(users)
    buyer = 0.4 * engagement + 0.9 * rng.standard_normal(users)
    risk = -0.5 * engagement + 0.85 * rng.standard_normal(users)
    existing = rng.random(users) < 0.55
    signup = np.where(existing, 0, rng.integers(1, max(days, 2), users))
    lapse = signup + rng.geometric(np.clip(0.006 * np.exp(0.8 * risk), 1e-4, 0.2))
    mix = rng.dirichlet(np.full(len(CATEGORIES), 0.35), users)
    return _Customers(
        signup=signup, lapse=lapse, fade=rng.integers(7, 22, users),
        p_visit=_sigmoid(-1.3 + 1.2 * engagement),
        conversion=np.clip(0.12 * np.exp(0.8 * buyer), 0.01, 0.7),
        price_level=np.exp(0.35 * rng.standard_normal(users)),
        cart_rate=0.2 + 0.6 * _sigmoid(buyer),
        basket=0.9 * np.exp(0.35 * rng.standard_normal(users)),
        mix=np.cumsum(mix, axis=1),
        device=rng.choice(len(DEVICES), users, p=_DEVICE_MIX),
        channel=rng.choice(len(CHANNELS), users, p=_CHANNEL_MIX),
    )


def _activity(people: _Customers, t: int) -> np.ndarray:
    """Each customer's activity on day `t`: 1 when active, fading to 0 at the lapse day."""
    alive = (people.signup <= t) & (t < people.lapse)
    left = (people.lapse - t) / people.fade
    return np.where(alive, np.clip(left, 0.0, 1.0), 0.0)


def _counts(rng: np.random.Generator, people: _Customers, activity: np.ndarray) -> np.ndarray:
    """Visits, searches, cart adds, orders and reviews per customer for one day, (users, 5)."""
    n = activity.size
    visits = (1 + rng.poisson(0.3, n)) * (rng.random(n) < people.p_visit * activity)
    orders = rng.binomial(visits, people.conversion * (0.5 + 0.5 * activity))
    counts = np.zeros((n, 5), dtype=np.int64)
    counts[:, _VISIT], counts[:, _ORDER] = visits, orders
    counts[:, _SEARCH] = rng.poisson(1.1 * visits)
    counts[:, _CART] = orders + rng.poisson(people.cart_rate * visits)
    counts[:, _REVIEW] = rng.binomial(visits, 0.04)
    return counts


def _orders(rng: np.random.Generator, people: _Customers, customer: np.ndarray,
            channel: np.ndarray, drifted: bool) -> _Orders:
    """Details of one day's orders: category from the customer's mix, items, price, discount."""
    category = (rng.random(customer.size)[:, None] > people.mix[customer, :-1]).sum(axis=1)
    items = 1 + rng.poisson(people.basket[customer])
    discount = rng.random(customer.size) < np.where(channel == CHANNELS.index("email"), 0.4, 0.12)
    unit = (_PRICE[category] * people.price_level[customer] * (1.25 if drifted else 1.0)
            * np.exp(rng.normal(0.0, 0.25, customer.size)))
    total = np.round(items * unit * np.where(discount, 0.85, 1.0), 2)
    return _Orders(customer, total, items, category, discount)


@dataclass(frozen=True)
class _Day:
    """One day's events as parallel arrays, grouped by customer; `order` indexes `orders`
    (the day's new orders, then the returns) on orders and returns, else it is -1."""

    customer: np.ndarray
    kind: np.ndarray
    second: np.ndarray
    session: np.ndarray
    order: np.ndarray
    orders: _Orders
    placed: _Orders


def _seconds(rng: np.random.Generator, customer: np.ndarray) -> np.ndarray:
    """Distinct, increasing seconds within the day for each customer's events (grouped by
    customer, in kind order): a start between 06:00 and 20:00, then gaps of 1-240 s."""
    if customer.size == 0:
        return customer
    gaps = rng.integers(1, 241, customer.size)
    cum = np.cumsum(gaps)
    first = np.flatnonzero(np.r_[True, customer[1:] != customer[:-1]])
    size = np.diff(np.r_[first, customer.size])
    offset = cum - np.repeat(cum[first] - gaps[first], size)
    span = np.repeat(offset[first + size - 1], size)
    start = np.repeat(rng.integers(6 * 3600, 20 * 3600, first.size), size)
    return np.minimum(start, 86_399 - span) + offset


def _day(rng: np.random.Generator, people: _Customers, counts: np.ndarray, returns: _Orders,
         drifted: bool) -> _Day:
    """Expand counts and due returns into one day's events, with sessions and orders."""
    n = counts.shape[0]
    customer = np.r_[np.repeat(np.tile(np.arange(n), 5), counts.T.ravel()), returns.customer]
    kind = np.r_[np.repeat(np.repeat(np.arange(5), n), counts.T.ravel()),
                 np.full(returns.customer.size, _RETURN)]
    order = np.lexsort((kind, customer))
    customer, kind = customer[order], kind[order]
    day_channel = np.where(rng.random(n) < 0.7, people.channel,
                           rng.choice(len(CHANNELS), n, p=_CHANNEL_MIX))[customer]
    device = np.where(rng.random(customer.size) < 0.85, people.device[customer],
                      rng.choice(len(DEVICES), customer.size, p=_DEVICE_MIX))
    if drifted:
        device = np.where(rng.random(customer.size) < 0.3, DEVICES.index("mobile"), device)
    is_order = kind == _ORDER
    placed = _orders(rng, people, customer[is_order], day_channel[is_order], drifted)
    index = np.full(customer.size, -1)
    index[is_order] = np.arange(placed.customer.size)
    # returns keep their arrival order within a customer (lexsort is stable)
    index[kind == _RETURN] = placed.customer.size + np.argsort(returns.customer, kind="stable")
    return _Day(customer, kind, _seconds(rng, customer), device * len(CHANNELS) + day_channel,
                index, _Orders.concat([placed, returns]), placed)


def _order_text(orders: _Orders) -> list[str]:
    """The `"order":{...}` member of each order's line."""
    return [
        f',"order":{{"total":{total:.2f},"items":{items},"category":"{CATEGORIES[c]}",'
        f'"discount":{"true" if off else "false"}}}'
        for total, items, c, off in zip(orders.total.tolist(), orders.items.tolist(),
                                        orders.category.tolist(), orders.discount.tolist(),
                                        strict=True)
    ]


def _lines(events: _Day, day: date, ids: list[str]) -> list[str]:
    """One JSON line per event, sorted by time (then customer)."""
    epoch = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    details = [*_order_text(events.orders), ""]  # index -1: a line without an order
    ordered = np.lexsort((events.customer, events.second)).tolist()
    cust, kind, second = events.customer.tolist(), events.kind.tolist(), events.second.tolist()
    session, order = events.session.tolist(), events.order.tolist()
    return [
        f'{{"customer":"{ids[cust[i]]}","at":{epoch + second[i]},"type":"{EVENT_TYPES[kind[i]]}",'
        f'{_SESSION[session[i]]}{details[order[i]]}}}'
        for i in ordered
    ]


def _schedule_returns(rng: np.random.Generator, placed: _Orders, t: int,
                      pending: dict[int, list[_Orders]]) -> None:
    """Queue the orders that will be returned 2 to 20 days later."""
    returned = np.flatnonzero(rng.random(placed.customer.size) < _RETURN_P[placed.category])
    due = t + rng.integers(2, 21, returned.size)
    for day in np.unique(due).tolist():
        pending.setdefault(day, []).append(placed.take(returned[due == day]))


def _due_returns(pending: dict[int, list[_Orders]], t: int, activity: np.ndarray) -> _Orders:
    """Returns due on day `t` by customers still active (a quiet customer returns nothing)."""
    due = _Orders.concat(pending.pop(t, [_NO_ORDERS]))
    return due.take(np.flatnonzero(activity[due.customer] > 0))


def _quota(total: int, t: int) -> list[int]:
    """Split `total` planted lines over PLANTED_REASONS, rotating the remainder by day."""
    base, rest = divmod(total, len(PLANTED_REASONS))
    return [base + ((i - t) % len(PLANTED_REASONS) < rest) for i in range(len(PLANTED_REASONS))]


def _corrupt(reason: str, line: str, j: int, rng: np.random.Generator) -> str:
    """A bad version of a good line that extract quarantines with exactly `reason`."""
    if reason == "malformed_json":
        return line[: int(rng.integers(1, len(line) - 1))]
    event: dict[str, Any] = json.loads(line)
    if reason in ("wrong_type:order.total", "wrong_type:order.items"):
        order = event.setdefault("order", {"total": 10.0, "items": 1, "category": "books",
                                           "discount": False})
        if reason == "wrong_type:order.total":
            order["total"] = ("abc", "12,50", "")[j % 3]
        else:
            order["items"] = (2.5, "3", [1])[j % 3]
    elif reason == "wrong_type:at":
        event["at"] = ("yesterday", str(event["at"]), "2026-01-01T10:00:00Z")[j % 3]
    elif reason == "wrong_type:session":
        event["session"] = ("mobile", ["mobile", "email"])[j % 2]
    elif reason.startswith("missing_field:"):
        del event[reason.split(":")[1]]
    elif reason == "unknown_event_type":
        event["type"] = ("wishlist_add", "login", "refund")[j % 3]
    elif reason == "ts_outside_partition":
        event["at"] += 86_400 * int(rng.choice([-3, -2, -1, 1, 2, 3]))
    elif reason == "invalid_value:channel":
        event["session"]["channel"] = ("carrier_pigeon", "EMAIL", "fax")[j % 3]
    return json.dumps(event, separators=(",", ":"))


def _plant(lines: list[str], fraction: float, rng: np.random.Generator, t: int
           ) -> tuple[list[str], dict[str, int]]:
    """Replace or repeat a deterministic sample of lines with bad ones; count per reason."""
    quota = _quota(min(int(round(fraction * len(lines))), len(lines)), t)
    picked = rng.choice(len(lines), sum(quota), replace=False).tolist()
    out, repeated = list(lines), []
    for reason, n in zip(PLANTED_REASONS, quota, strict=True):
        for j in range(n):
            index = picked.pop()
            if reason == "duplicate_event_id":
                repeated.append(index)
            else:
                out[index] = _corrupt(reason, lines[index], t + j, rng)
    for index in sorted(repeated, reverse=True):
        out.insert(index + 1, lines[index])
    return out, dict(zip(PLANTED_REASONS, quota, strict=True))


def generate(
    lake_root: str, users: int, days: int, seed: int, start_date: date,
    corrupt_fraction: float = 0.0, drift_day: int | None = None,
) -> ShopDataResult:
    """Write `days` daily order-log files for `users` customers under `{lake_root}/raw/events`.

    Files of the generated days and `_planted.json` are replaced; other days are left alone.
    """
    if users < 1 or days < 1 or not 0.0 <= corrupt_fraction <= 1.0:
        raise ValueError("need users >= 1, days >= 1 and 0 <= corrupt_fraction <= 1")
    rng = np.random.default_rng(seed)
    people = _customers(rng, users, days)
    ids = [f"c{i:06d}" for i in range(1, users + 1)]
    lake = Lake(lake_root)
    pending: dict[int, list[_Orders]] = {}  # returns by the day they are due
    paths, lines_per_day, planted = [], {}, {}
    for t in range(days):
        day, drifted = start_date + timedelta(days=t), drift_day is not None and t >= drift_day
        activity = _activity(people, t)
        returns = _due_returns(pending, t, activity)
        events = _day(rng, people, _counts(rng, people, activity), returns, drifted)
        _schedule_returns(rng, events.placed, t, pending)
        lines, reasons = _plant(_lines(events, day, ids), corrupt_fraction,
                                np.random.default_rng([seed, t, 7919]), t)
        path = f"{lake.raw_events(day)}/events.jsonl"
        write_bytes(path, "".join(f"{line}\n" for line in lines).encode())
        paths.append(path)
        lines_per_day[day.isoformat()], planted[day.isoformat()] = len(lines), reasons
    return _finish(lake, paths, lines_per_day, planted, people, days, seed)


def _finish(lake: Lake, paths: list[str], lines_per_day: dict[str, int],
            planted: dict[str, dict[str, int]], people: _Customers, days: int, seed: int
            ) -> ShopDataResult:
    """Write `_planted.json`, log a summary and build the result."""
    planted_path = f"{lake.raw_events()}/{PLANTED_FILE}"
    totals = {reason: sum(day[reason] for day in planted.values()) for reason in PLANTED_REASONS}
    write_json(planted_path, {"seed": seed, "reasons": list(PLANTED_REASONS),
                              "days": planted, "lines": lines_per_day, "totals": totals})
    inactive = int((people.lapse < days).sum())
    log.info("shop data: %d customers, %d days, %d lines, %d went quiet, planted %s",
             people.signup.size, days, sum(lines_per_day.values()), inactive, totals)
    return ShopDataResult(paths=tuple(paths), lines_per_day=lines_per_day, planted=totals,
                          planted_path=planted_path, users=int(people.signup.size),
                          inactive=inactive)
