"""In-process rate limiter: a sliding log per key, for a single process."""

from __future__ import annotations

from collections import deque

from identity.application.ports import Clock, RateLimiter
from identity.domain.ratelimits import RateLimit, RateLimitDecision


class _HitLog:
    """The times of the allowed hits on one key that are still inside its window."""

    __slots__ = ("period", "times")

    def __init__(self, period: float) -> None:
        self.period = period
        self.times: deque[float] = deque()

    def prune(self, now: float) -> None:
        cutoff = now - self.period
        while self.times and self.times[0] <= cutoff:
            self.times.popleft()


class MemoryRateLimiter(RateLimiter):
    """A sliding-log limiter held in this process's memory.

    Exact: at most ``limit.count`` hits are allowed in any window of
    ``limit.period_seconds``, with no burst at a fixed-window boundary. A
    refused hit is not recorded. Each key keeps at most ``count`` timestamps,
    and keys whose window has passed are swept every ``sweep_interval``
    seconds, so memory follows the keys active in the last period.

    ``hit`` never awaits, so it is atomic on the event loop; it is not shared
    between processes (use the Redis limiter for that). Windows follow
    ``clock``, the application's: a test that moves its clock moves them too.
    """

    def __init__(self, clock: Clock, *, sweep_interval: float = 30.0) -> None:
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._logs: dict[str, _HitLog] = {}
        self._next_sweep = self._seconds() + sweep_interval

    def _seconds(self) -> float:
        return self._clock.now().timestamp()

    @property
    def tracked_keys(self) -> int:
        """How many keys currently hold state (for tests and metrics)."""
        return len(self._logs)

    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        now = self._seconds()
        if now >= self._next_sweep:
            self._sweep(now)
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = _HitLog(limit.period_seconds)
        log.period = limit.period_seconds
        log.prune(now)
        period = limit.period_seconds
        if len(log.times) < limit.count:
            log.times.append(now)
            return RateLimitDecision(
                allowed=True,
                limit=limit.count,
                remaining=limit.count - len(log.times),
                reset_after=period,
                retry_after=0.0,
            )
        return RateLimitDecision(
            allowed=False,
            limit=limit.count,
            remaining=0,
            reset_after=log.times[-1] + period - now,
            # The hit that must leave the window for one more to fit (more than
            # one when the same key was used with a larger limit before).
            retry_after=log.times[-limit.count] + period - now,
        )

    def _sweep(self, now: float) -> None:
        expired = [
            key
            for key, log in self._logs.items()
            if not log.times or log.times[-1] <= now - log.period
        ]
        for key in expired:
            del self._logs[key]
        self._next_sweep = now + self._sweep_interval
