"""Who may call the lookup API and how fast: API keys (stored as sha256 hex) and a token
bucket per key.

    keys = KeyRing.of(cfg.serve, os.environ)
    caller = keys.admit(request.headers)   # a Caller, or RequestRefused(401 or 429)

A request names its key as `Authorization: Bearer <key>` or `X-API-Key: <key>`. The ring
holds only hashes: the config carries `sha256` of each key, and raw keys given in
PRECAST_API_KEYS (`name=key,name2=key2`) are hashed when the ring is built. With no key at
all the API is open and every caller is `anonymous` (still rate limited when a limit is set).
Admitting a request is a hash, a dict look-up and a few float operations on the event loop's
thread: no lock, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from precast.config import ApiKeyConfig, ServeConfig

__all__ = ["ANONYMOUS", "KEYS_ENV", "RequestRefused", "Caller", "KeyRing", "key_hash", "new_key"]

KEYS_ENV = "PRECAST_API_KEYS"
ANONYMOUS = "anonymous"


class RequestRefused(Exception):
    """A request the API refuses: HTTP status, a stable code, a message for the caller and
    headers (here: 401 for no, an unknown or a revoked key; 429 past a rate limit)."""

    def __init__(self, status: int, code: str, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})


def key_hash(key: str) -> str:
    """The sha256 hex of an API key, as the config stores it."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "pk_" + secrets.token_urlsafe(32)


@dataclass
class Caller:
    """One key's holder and its token bucket (`rate` per second, up to `burst` at once)."""

    name: str
    revoked: bool = False
    rate: float | None = None
    burst: float = 1.0
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> float:
        """0 when a request may go now (one token taken), else the seconds until it may."""
        if self.rate is None:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def _caller(name: str, settings: ServeConfig, key: ApiKeyConfig | None = None) -> Caller:
    """A key's caller: its own rate (with its own burst, default one second of it), else
    serve.rate_limit_per_s and serve.rate_burst (a key's own burst still wins)."""
    rate: float | None
    burst: int | None
    if key is not None and key.rate_limit_per_s is not None:
        rate, burst = key.rate_limit_per_s, key.rate_burst
    else:
        rate = settings.rate_limit_per_s
        burst = key.rate_burst if key is not None and key.rate_burst else settings.rate_burst
    burst = burst or (max(1, math.ceil(rate)) if rate else 1)
    return Caller(name, bool(key and key.revoked), rate, float(burst))


def parse_env_keys(text: str) -> list[tuple[str, str]]:
    """`name=key,name2=key2` → [(name, key), ...]; ValueError names a malformed entry."""
    pairs = []
    for position, entry in enumerate(part.strip() for part in text.split(",")):
        name, sep, key = entry.partition("=")
        if not entry:
            continue
        if not sep or not name.strip() or not key.strip():
            raise ValueError(f"{KEYS_ENV} entry {position + 1} is not name=key")
        pairs.append((name.strip(), key.strip()))
    return pairs


class KeyRing:
    """The API's keys by hash; :meth:`admit` says who a request comes from, or refuses it."""

    def __init__(self, callers: dict[str, Caller], settings: ServeConfig) -> None:
        self._by_hash = callers
        self.open = not callers
        self._anonymous = _caller(ANONYMOUS, settings)

    @classmethod
    def of(cls, settings: ServeConfig, environ: Mapping[str, str]) -> KeyRing:
        """The keys of serve.api_keys plus those in PRECAST_API_KEYS (hashed here)."""
        callers = {key.sha256: _caller(key.name, settings, key) for key in settings.api_keys}
        for name, raw in parse_env_keys(environ.get(KEYS_ENV, "")):  # config entries win:
            callers.setdefault(key_hash(raw), _caller(name, settings))  # revoked stays so
        return cls(callers, settings)

    @property
    def active(self) -> int:
        """How many keys are not revoked."""
        return sum(not caller.revoked for caller in self._by_hash.values())

    def admit(self, headers: Mapping[str, str]) -> Caller:
        """The caller a request's key names; RequestRefused(401) without a usable key,
        RequestRefused(429, Retry-After) past its rate limit."""
        caller = self._anonymous if self.open else self._named(headers)
        wait = caller.take(time.monotonic())
        if wait:
            seconds = max(1, math.ceil(wait))
            raise RequestRefused(429, "rate_limited", f"rate limit of {caller.rate:g} requests/s "
                               f"for key {caller.name} exceeded; retry in {seconds} s",
                               {"Retry-After": str(seconds)})
        return caller

    def _named(self, headers: Mapping[str, str]) -> Caller:
        key = headers.get("x-api-key")
        if key is None:
            scheme, _, token = headers.get("authorization", "").partition(" ")
            key = token.strip() if scheme.lower() == "bearer" else None
        if not key:
            raise _unauthorized("missing_api_key", "an API key is required: send "
                                "'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        caller = self._by_hash.get(key_hash(key))
        if caller is None:
            raise _unauthorized("invalid_api_key", "the API key is not valid")
        if caller.revoked:
            raise _unauthorized("revoked_api_key", f"the API key of {caller.name} is revoked")
        return caller


def _unauthorized(code: str, message: str) -> RequestRefused:
    return RequestRefused(401, code, message, {"WWW-Authenticate": "Bearer"})
