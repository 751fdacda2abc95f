"""Redis rate limiter: one sliding log per key, shared by every process and host."""

from __future__ import annotations

import math
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from identity.application.ports import RateLimiter
from identity.domain.ratelimits import RateLimit, RateLimitDecision

# One atomic script per check. The time comes from the Redis server (TIME), so
# hosts with skewed clocks still share one window. A sorted set holds the
# allowed hits of the window, scored in microseconds; refused hits are not
# added. Members are "sec.usec:n" so hits in the same microsecond stay
# distinct. Returns {allowed, remaining, reset_after_us, retry_after_us}.
_SLIDING_LOG = """
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, now, t[1] .. '.' .. t[2] .. ':' .. count)
  redis.call('PEXPIRE', key, ARGV[3])
  return {1, limit - count - 1, period, 0}
end
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
local blocking = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
return {0, 0, tonumber(newest[2]) + period - now, tonumber(blocking[2]) + period - now}
"""


def create_rate_limit_redis(url: str, *, timeout: float = 0.25) -> Redis:
    """A Redis client suited to rate limiting: short timeouts and no retries.

    A limiter sits on every request, so a slow or dead Redis must fail fast
    (the ``FallbackRateLimiter`` then answers from memory) rather than add the
    library's default 5 s timeouts and retries to each request. Callers that
    build their own client should pass the same ``socket_timeout``,
    ``socket_connect_timeout`` and ``retry=Retry(NoBackoff(), 0)``.
    """
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return client


class RedisRateLimiter(RateLimiter):
    """A sliding-log limiter in Redis, exact across processes and hosts.

    Each check is one Lua script (atomic on the server). Keys are
    ``key_prefix + key`` and expire one period after their latest allowed hit.
    Raises the client's ``redis.exceptions.ConnectionError`` or
    ``TimeoutError`` when Redis is unreachable; wrap it in
    ``FallbackRateLimiter`` to keep answering during an outage.
    """

    def __init__(self, client: Redis, *, key_prefix: str = "identity:rl:") -> None:
        self._prefix = key_prefix
        # register_script runs EVALSHA and reloads the script after NOSCRIPT
        # (for instance once Redis has restarted empty).
        self._script = client.register_script(_SLIDING_LOG)

    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        period_us = max(1, round(limit.period_seconds * 1_000_000))
        ttl_ms = max(1, math.ceil(limit.period_seconds * 1000))
        reply: Any = await self._script(
            keys=[self._prefix + key], args=[limit.count, period_us, ttl_ms]
        )
        allowed, remaining, reset_after_us, retry_after_us = (int(part) for part in reply)
        return RateLimitDecision(
            allowed=bool(allowed),
            limit=limit.count,
            remaining=max(0, remaining),
            reset_after=reset_after_us / 1_000_000,
            retry_after=retry_after_us / 1_000_000,
        )
