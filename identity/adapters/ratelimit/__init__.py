"""Rate limiters: in memory, in Redis, and Redis with a memory fallback."""

from identity.adapters.ratelimit.fallback import FallbackRateLimiter
from identity.adapters.ratelimit.memory import MemoryRateLimiter
from identity.adapters.ratelimit.redis import RedisRateLimiter, create_rate_limit_redis

__all__ = [
    "FallbackRateLimiter",
    "MemoryRateLimiter",
    "RedisRateLimiter",
    "create_rate_limit_redis",
]
