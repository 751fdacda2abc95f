"""A rate limiter that keeps answering from memory while Redis is down."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from identity.application.ports import RateLimiter, RateLimiterStatus
from identity.domain.ratelimits import RateLimit, RateLimitDecision

logger = logging.getLogger(__name__)

# What counts as "Redis is unavailable". ReadOnlyError: a replica that has not
# been promoted yet after a failover.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OSError,
)


class FallbackRateLimiter(RateLimiter):
    """Use ``primary`` (Redis); answer from ``fallback`` (memory) during an outage.

    When ``primary`` raises one of ``outage_errors`` the same check is
    answered by ``fallback`` and ``status`` turns ``"degraded"``. While
    degraded, ``primary`` is tried again at most once per ``retry_interval``
    seconds, so a dead Redis does not add its timeout to every request; the
    first success turns ``status`` back to ``"ok"``. A warning is logged at
    most once per ``warn_interval`` seconds. While degraded, limits are
    per process (counts made in memory are not copied to Redis).
    """

    def __init__(
        self,
        primary: RateLimiter,
        fallback: RateLimiter,
        *,
        retry_interval: float = 5.0,
        warn_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        outage_errors: tuple[type[BaseException], ...] = OUTAGE_ERRORS,
    ) -> None:
        self._primary = primary
        self._fallback = fallback
        self._retry_interval = retry_interval
        self._warn_interval = warn_interval
        self._clock = clock
        self._outage_errors = outage_errors
        self._degraded = False
        self._next_attempt = 0.0
        self._last_warning: float | None = None

    @property
    def status(self) -> RateLimiterStatus:
        """``"ok"`` while the primary answers, ``"degraded"`` after it failed."""
        return "degraded" if self._degraded else "ok"

    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        now = self._clock()
        if self._degraded and now < self._next_attempt:
            return await self._fallback.hit(key, limit)
        if self._degraded:
            # Claim the retry before awaiting, so concurrent requests do not
            # all wait on the same dead server.
            self._next_attempt = now + self._retry_interval
        try:
            decision = await self._primary.hit(key, limit)
        except self._outage_errors as error:
            self._mark_degraded(error)
            return await self._fallback.hit(key, limit)
        if self._degraded:
            self._degraded = False
            logger.info("rate limiter: Redis is reachable again, shared limits restored")
        return decision

    def _mark_degraded(self, error: BaseException) -> None:
        now = self._clock()
        self._degraded = True
        self._next_attempt = now + self._retry_interval
        if self._last_warning is None or now - self._last_warning >= self._warn_interval:
            self._last_warning = now
            logger.warning(
                "rate limiter: Redis unavailable (%s: %s); using per-process limits",
                type(error).__name__,
                error,
            )
