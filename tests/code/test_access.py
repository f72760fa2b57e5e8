"""API keys and token buckets of the lookup API (precast.serving.access), without a server."""

from __future__ import annotations

import pytest

from precast.config import ServeConfig
from precast.serving.access import KEYS_ENV, KeyRing, RequestRefused, key_hash


def _ring(environ: dict[str, str] | None = None, **serve: object) -> KeyRing:
    return KeyRing.of(ServeConfig.model_validate(serve), environ or {})


def test_a_bucket_lets_its_burst_through_then_refills_at_its_rate() -> None:
    ring = _ring({KEYS_ENV: "app=k1"}, rate_limit_per_s=2, rate_burst=3)
    caller = ring.admit({"x-api-key": "k1"})  # the first of the burst of 3
    start = caller.stamp
    assert [caller.take(start) for _ in range(2)] == [0.0, 0.0]
    assert caller.take(start) == pytest.approx(0.5)  # one token at 2/s
    assert caller.take(start + 0.5) == 0.0
    assert caller.take(start + 10) == 0.0 and caller.tokens == pytest.approx(2)  # capped at 3


def test_a_keys_own_rate_comes_with_its_own_burst() -> None:
    keys = [{"name": "fast", "sha256": key_hash("f"), "rate_limit_per_s": 100},
            {"name": "deep", "sha256": key_hash("d"), "rate_burst": 50}]
    ring = _ring(api_keys=keys, rate_limit_per_s=1, rate_burst=2)
    fast, deep = ring.admit({"x-api-key": "f"}), ring.admit({"x-api-key": "d"})
    assert (fast.rate, fast.burst) == (100, 100)
    assert (deep.rate, deep.burst) == (1, 50)


def test_an_open_api_is_one_anonymous_bucket_and_unlimited_by_default() -> None:
    assert _ring().admit({}).name == "anonymous"
    assert _ring().admit({}).rate is None
    limited = _ring(rate_limit_per_s=1)
    limited.admit({})
    with pytest.raises(RequestRefused) as refused:
        limited.admit({})
    assert (refused.value.status, refused.value.headers) == (429, {"Retry-After": "1"})


@pytest.mark.parametrize("text", ["app", "=k", "app=", "app=k,=k2"])
def test_malformed_environment_keys_are_refused_by_position(text: str) -> None:
    with pytest.raises(ValueError, match=rf"{KEYS_ENV} entry \d is not name=key"):
        _ring({KEYS_ENV: text})


def test_revoking_every_key_closes_the_api_rather_than_opening_it() -> None:
    ring = _ring(api_keys=[{"name": "app", "sha256": key_hash("k"), "revoked": True}])
    assert (ring.open, ring.active) == (False, 0)
    for headers, code in [({}, "missing_api_key"), ({"x-api-key": "k"}, "revoked_api_key")]:
        with pytest.raises(RequestRefused) as refused:
            ring.admit(headers)
        assert (refused.value.status, refused.value.code) == (401, code)
