"""Vendor rate limits shared by every replica through Redis (injected into ``core``).

A vendor's rate limit is per vendor account (ZEGO: 10 calls per second per Action and
AppId, zegocloud.md §1), not per gateway process: three replicas each allowing 10 per second
would send 30. With ``AVATAR_GATEWAY_REDIS_URL`` set, the server gives every adapter's
:class:`core.resilience.RateLimiter` this storage (``VendorAdapter.share_rate_limits``), so
all replicas count in one sliding window per account and operation.

Why not the ``limits`` library (evaluated, 5.8): its moving window is the right algorithm
but (1) it stamps entries with each replica's own ``time.time()``, so clock skew between
nodes shifts the shared window; (2) windows are whole seconds (an ``int`` expiry passed to
Redis ``EXPIRE``), which leaves no room for the margin below, without which two replicas'
calls that the network reorders by a millisecond make the vendor see 11 calls in its
second; (3) its async Redis storage defaults to a second client library (coredis), and
its ``redis`` extra pins ``redis<8`` while the gateway runs redis-py 8; (4) it would add
Deprecated and wrapt for none of this. It installs here (5.8.0 with those two), but what is
needed is one atomic script over a sorted set with Redis's own clock: :data:`_ACQUIRE`.
"""

from __future__ import annotations

import uuid
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from core.resilience import MemoryRateLimitStorage, RateLimitStorage

log = structlog.get_logger("gateway.ratelimit")

SHARED_WINDOW_MARGIN_S = 0.1
"""Added to each shared window (s). A call is counted when a replica asks Redis, and reaches
the vendor later by its own path; the vendor counts arrivals. Widening our window by 100 ms
(10% of ZEGO's throughput) keeps its one-second window at 10 calls while one replica's
request is delayed by up to 100 ms more than another's. 50 ms was not enough: a burst of 24
creates over three replicas in one process (tests/integration/test_replica_limits.py) saw
an 11th status poll within the emulator's second in about 1 run of 10; with 100 ms, none in
25 runs."""

KEY_PREFIX = "ag:rl:"

# KEYS[1]: the sorted set of one (account, operation): member per counted call, scored by
# Redis time in µs. ARGV: limit, window (µs), a unique member. Returns 0 when the call was
# counted, else the µs until the oldest counted call leaves the window. Redis's clock (TIME)
# is the one clock every replica shares; since Redis 5 scripts replicate their effects, so a
# script may read TIME before writing.
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


class RedisRateLimitStorage(RateLimitStorage):
    """Sliding windows in Redis, one per vendor account and operation, for every replica.

    If Redis cannot be reached the count falls back to this process (and a warning is
    logged per call): closing a session calls the vendor too, and a Redis outage must not
    stop the gateway from closing billed sessions; the vendor's own limit answer is retried
    by shared code.

    Args:
        url: ``redis://host:port/db``.
        margin_s: added to every window (s); see :data:`SHARED_WINDOW_MARGIN_S`.
    """

    def __init__(self, url: str, *, margin_s: float = SHARED_WINDOW_MARGIN_S) -> None:
        self._redis: Any = aioredis.from_url(url, decode_responses=True)
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._margin_s = margin_s
        self._fallback = MemoryRateLimitStorage()

    async def try_acquire(self, key: str, limit: int, window_s: float) -> float:
        """Count one call for ``key`` in the shared window if it has room; else the wait (s)."""
        window_us = int((window_s + self._margin_s) * 1_000_000)
        try:
            wait_us = await self._acquire(
                keys=[KEY_PREFIX + key], args=[limit, window_us, uuid.uuid4().hex]
            )
        except RedisError as exc:
            log.warning("rate_limit_redis_unavailable", key=key, error=type(exc).__name__)
            return await self._fallback.try_acquire(key, limit, window_s)
        return int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()
