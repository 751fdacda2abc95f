"""Targeted rate limits inside use cases, keyed per tenant and email."""

from __future__ import annotations

from uuid import UUID

from identity.application.ports import RateLimiter
from identity.domain.errors import RateLimitedError
from identity.domain.ratelimits import RateLimit


class Throttle:
    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    async def check(self, tenant_id: UUID, action: str, subject: str, limit: RateLimit) -> None:
        """Count one attempt; raise ``RateLimitedError`` over the limit.

        Counted the same whether or not an account exists, so a 429 reveals nothing.
        """
        decision = await self._limiter.hit(f"{tenant_id}:{action}:{subject}", limit)
        if not decision.allowed:
            raise RateLimitedError(decision)
