"""One contract for every RateLimiter: in memory and in a real Redis.

Redis: ``IDENTITY_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
Each test uses its own random key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from identity.adapters.clock import ManualClock, SystemClock
from identity.adapters.ratelimit import (
    MemoryRateLimiter,
    RedisRateLimiter,
    create_rate_limit_redis,
)
from identity.application.ports import RateLimiter
from identity.domain.ratelimits import RateLimit

REDIS_URL_VARIABLE = "IDENTITY_TEST_REDIS_URL"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def redis_client() -> AsyncIterator[Redis]:
    url = os.environ.get(REDIS_URL_VARIABLE, DEFAULT_REDIS_URL)
    # These tests are about atomicity, not latency: 50 connections opened at once on a
    # loaded 2-core runner (two test workers) once took longer than a 2 s timeout.
    client = create_rate_limit_redis(url, timeout=10.0)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        await client.aclose()
        pytest.fail(
            f"Redis is not reachable at {url} ({error}). Start Redis there or set "
            f"{REDIS_URL_VARIABLE} to the URL of a Redis the tests may write to."
        )
    yield client
    await client.aclose()


@pytest.fixture
async def redis_prefix(redis_client: Redis) -> AsyncIterator[str]:
    prefix = f"identity:test:rl:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis_client.scan_iter(match=prefix + "*")]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return MemoryRateLimiter(SystemClock())
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("redis_prefix")
    return RedisRateLimiter(client, key_prefix=prefix)


async def test_allows_exactly_the_limit_then_refuses(limiter: RateLimiter) -> None:
    limit = RateLimit(count=5, period_seconds=60)

    allowed = [await limiter.hit("k", limit) for _ in range(5)]
    refused = await limiter.hit("k", limit)

    assert [d.allowed for d in allowed] == [True] * 5
    assert [d.remaining for d in allowed] == [4, 3, 2, 1, 0]
    assert all(d.limit == 5 and d.retry_after == 0 for d in allowed)
    assert all(0 < d.reset_after <= 60 for d in allowed)
    assert not refused.allowed
    assert refused.limit == 5
    assert refused.remaining == 0
    assert 59 < refused.retry_after <= 60
    assert refused.retry_after <= refused.reset_after <= 60


async def test_budget_comes_back_after_the_window(limiter: RateLimiter) -> None:
    limit = RateLimit(count=3, period_seconds=0.3)
    for _ in range(3):
        assert (await limiter.hit("k", limit)).allowed
    refused = await limiter.hit("k", limit)
    assert not refused.allowed

    await asyncio.sleep(refused.reset_after + 0.02)  # the real window passing

    again = [await limiter.hit("k", limit) for _ in range(4)]
    assert [d.allowed for d in again] == [True, True, True, False]


async def test_window_slides_rather_than_resetting_at_once(limiter: RateLimiter) -> None:
    limit = RateLimit(count=3, period_seconds=0.4)
    assert (await limiter.hit("k", limit)).allowed
    await asyncio.sleep(0.2)
    assert (await limiter.hit("k", limit)).allowed
    assert (await limiter.hit("k", limit)).allowed
    refused = await limiter.hit("k", limit)
    assert not refused.allowed
    assert 0.05 < refused.retry_after < 0.25  # when the first hit leaves the window

    await asyncio.sleep(refused.retry_after + 0.03)

    # Only the first hit has left the window; the two later ones still count.
    assert (await limiter.hit("k", limit)).allowed
    assert not (await limiter.hit("k", limit)).allowed


async def test_refused_hits_are_not_counted(limiter: RateLimiter) -> None:
    limit = RateLimit(count=2, period_seconds=0.4)
    assert (await limiter.hit("k", limit)).allowed
    assert (await limiter.hit("k", limit)).allowed
    await asyncio.sleep(0.2)
    refusals = [await limiter.hit("k", limit) for _ in range(3)]
    assert not any(d.allowed for d in refusals)

    await asyncio.sleep(0.25)  # the allowed hits (0.45 s old) have left the window

    # Had the refusals (0.25 s old) been counted they would still fill it.
    assert (await limiter.hit("k", limit)).allowed
    assert (await limiter.hit("k", limit)).allowed


async def test_keys_are_independent(limiter: RateLimiter) -> None:
    limit = RateLimit(count=2, period_seconds=60)
    for _ in range(2):
        assert (await limiter.hit("login:a@example.com", limit)).allowed
    assert not (await limiter.hit("login:a@example.com", limit)).allowed

    other = await limiter.hit("login:b@example.com", limit)

    assert other.allowed
    assert other.remaining == 1


async def test_concurrent_hits_never_exceed_the_limit(limiter: RateLimiter) -> None:
    limit = RateLimit(count=10, period_seconds=60)
    start = asyncio.Event()

    async def contender() -> bool:
        await start.wait()
        return (await limiter.hit("race", limit)).allowed

    tasks = [asyncio.create_task(contender()) for _ in range(50)]
    await asyncio.sleep(0)  # let every task reach the barrier
    start.set()
    results = await asyncio.gather(*tasks)

    assert results.count(True) == 10


@pytest.mark.integration
async def test_redis_keys_carry_a_ttl(redis_client: Redis, redis_prefix: str) -> None:
    limiter = RedisRateLimiter(redis_client, key_prefix=redis_prefix)

    await limiter.hit("k", RateLimit(count=3, period_seconds=30))

    ttl_ms = await redis_client.pttl(redis_prefix + "k")
    assert 29_000 < ttl_ms <= 30_000


async def test_memory_limiter_reports_exact_times() -> None:
    clock = ManualClock()
    limiter = MemoryRateLimiter(clock)
    limit = RateLimit(count=2, period_seconds=10)
    await limiter.hit("k", limit)
    clock.advance(seconds=4)
    await limiter.hit("k", limit)
    clock.advance(seconds=1)

    refused = await limiter.hit("k", limit)

    assert refused.retry_after == pytest.approx(5)  # the first hit leaves at +10
    assert refused.reset_after == pytest.approx(9)  # the second at +14
    clock.advance(seconds=5)
    assert (await limiter.hit("k", limit)).allowed


async def test_memory_limiter_prunes_expired_keys() -> None:
    clock = ManualClock()
    limiter = MemoryRateLimiter(clock, sweep_interval=30)
    for n in range(1_000):
        await limiter.hit(f"ip:{n}", RateLimit(count=5, period_seconds=60))
    long_lived = RateLimit(count=5, period_seconds=3600)
    await limiter.hit("hourly", long_lived)
    assert limiter.tracked_keys == 1_001

    clock.advance(seconds=61)
    await limiter.hit("fresh", RateLimit(count=5, period_seconds=60))

    assert limiter.tracked_keys == 2  # "hourly" is still inside its window
    assert (await limiter.hit("hourly", long_lived)).remaining == 3
