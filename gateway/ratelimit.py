"""Vendor rate limits shared by every replica through Redis (injected into ``core``).

A vendor's rate limit is per vendor account (ZEGO: 10 calls per second per Action and
AppId, zegocloud.md §1), not per gateway process: three replicas each allowing 10 per second
would send 30. With ``AVATAR_GATEWAY_REDIS_URL`` set, the server gives every adapter's
:class:`core.resilience.RateLimiter` this storage (``VendorAdapter.share_rate_limits``), so
all replicas count in one sliding window per account and operation.

Why not the ``limits`` library (evaluated, 5.8): its moving window is the right algorithm
but (1) it stamps entries with each replica's own ``time.time()``, so clock skew between
nodes shifts the shared window; (2) windows are whole seconds (an ``int`` expiry passed to
Redis ``EXPIRE``) and an entry is stamped once, at admission, so a call cannot be counted as
of its answer (see ``RateLimiter.slot``), without which replicas' calls that reach the
vendor with different delays make it see 11 calls in its second; (3) its async Redis
storage defaults to a second client library (coredis), and its ``redis`` extra pins
``redis<8`` while the gateway runs redis-py 8; (4) it would add Deprecated and wrapt for
none of this. It installs here (5.8.0 with those two), but what is needed is two small
atomic scripts over a sorted set with Redis's own clock: :data:`_ACQUIRE`, :data:`_SETTLE`.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from redis.exceptions import RedisError

from core.resilience import MemoryRateLimitStorage, RateLimitStorage
from gateway.registry import redis_client

log = structlog.get_logger("gateway.ratelimit")

SHARED_WINDOW_MARGIN_S = 0.01
"""Added to each shared window (s), for clock granularity only. The spread of latencies
between replicas is bounded otherwise: the limiter stamps a call again when its answer comes
(core.resilience.RateLimiter.slot). A margin on admission times alone could only guess that
spread: 50 and 100 ms both let the vendor see 11 calls in its second with three gateway
processes on one busy host."""

KEY_PREFIX = "ag:rl:"
FALLBACK_S = 1.0
"""After Redis failed, how long calls are counted in this process only before it is asked
again (s)."""

# KEYS[1]: the sorted set of one (account, operation): member per counted call, scored by
# Redis time in µs. ARGV: limit, window (µs), the call's unique id. Returns 0 when the call
# was counted, else the µs until the oldest counted call leaves the window. Redis's clock
# (TIME) is the one clock every replica shares; since Redis 5 scripts replicate their
# effects, so a script may read TIME before writing.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""


# KEYS[1] as above. ARGV: the call's id, key lifetime (ms). Stamps the call with Redis time
# now (re-adding it if it had left the window meanwhile).
_SETTLE = """
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) * 1000000 + tonumber(t[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


class RedisRateLimitStorage(RateLimitStorage):
    """Sliding windows in Redis, one per vendor account and operation, for every replica.

    If Redis cannot be reached the count falls back to this process for
    ``FALLBACK_S`` (a warning is logged when it starts): closing a session calls the vendor
    too, and a Redis outage must not stop the gateway from closing billed sessions or live
    Drives from starting turns; the vendor's own limit answer is retried by shared code.
    Within that period no call waits for Redis again.

    Args:
        url: ``redis://host:port/db``.
        margin_s: added to every window (s); see :data:`SHARED_WINDOW_MARGIN_S`.
    """

    def __init__(self, url: str, *, margin_s: float = SHARED_WINDOW_MARGIN_S) -> None:
        self._redis: Any = redis_client(url)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._settle = self._redis.register_script(_SETTLE)
        self._margin_s = margin_s
        self._fallback = MemoryRateLimitStorage()
        self._down_until = 0.0  # time.monotonic() until which Redis is not asked

    def _redis_down(self, key: str, exc: Exception) -> None:
        if not self._down_until:
            log.warning("rate_limit_redis_unavailable", key=key, error=type(exc).__name__)
        self._down_until = time.monotonic() + FALLBACK_S

    def _use_fallback(self) -> bool:
        if self._down_until and time.monotonic() >= self._down_until:
            self._down_until = 0.0
            log.info("rate_limit_redis_retried")
        return bool(self._down_until)

    async def try_acquire(self, key: str, limit: int, window_s: float, call: str) -> float:
        """Count call ``call`` for ``key`` in the shared window if it has room; else the wait."""
        window_us = int((window_s + self._margin_s) * 1_000_000)
        if self._use_fallback():
            return await self._fallback.try_acquire(key, limit, window_s, call)
        try:
            wait_us = await self._acquire(keys=[KEY_PREFIX + key], args=[limit, window_us, call])
        except RedisError as exc:
            self._redis_down(key, exc)
            return await self._fallback.try_acquire(key, limit, window_s, call)
        return int(wait_us) / 1_000_000

    async def settle(self, key: str, window_s: float, call: str) -> None:
        """Stamp call ``call`` of ``key`` with Redis time now (it was answered or failed)."""
        lifetime_ms = int((window_s + self._margin_s) * 1000) + 1000
        if self._use_fallback():
            await self._fallback.settle(key, window_s, call)
            return
        try:
            await self._settle(keys=[KEY_PREFIX + key], args=[call, lifetime_ms])
        except RedisError as exc:
            self._redis_down(key, exc)
            await self._fallback.settle(key, window_s, call)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
