"""Optional port members are in the Protocols with a default: an adapter that
subclasses its port and leaves them out still answers them."""

from __future__ import annotations

from identity.application.ports import PasswordHasher, RateLimiter
from identity.domain.ratelimits import RateLimit, RateLimitDecision


class PlainLimiter(RateLimiter):
    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        raise NotImplementedError


class PlainHasher(PasswordHasher):
    async def hash(self, password: str) -> str:
        return "h:" + password

    async def verify(self, password: str, hashed: str) -> bool:
        return hashed == "h:" + password

    async def dummy_verify(self, password: str) -> None:
        return None

    def needs_rehash(self, hashed: str) -> bool:
        return False


def test_a_rate_limiter_without_a_status_reports_ok() -> None:
    assert PlainLimiter().status == "ok"


async def test_a_hasher_without_a_warm_up_step_warms_up_at_once() -> None:
    assert await PlainHasher().warm_up() is None
