"""The Redis limiter's fallback through a real outage of a private redis-server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from identity.adapters.clock import SystemClock
from identity.adapters.ratelimit import (
    FallbackRateLimiter,
    MemoryRateLimiter,
    RedisRateLimiter,
    create_rate_limit_redis,
)
from identity.application.ports import RateLimiter
from identity.domain.ratelimits import RateLimit, RateLimitDecision

REDIS_SERVER = shutil.which("redis-server")
ALICE = "login:alice@example.com"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        REDIS_SERVER is None,
        reason="redis-server is not on PATH; this test starts and stops its own server",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """A throwaway redis-server on a fixed port that the test can stop and restart."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._directory = directory
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        assert REDIS_SERVER is not None
        self._process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await self._wait_until_ready()

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            await self._process.wait()
        self._process = None

    async def _wait_until_ready(self) -> None:
        assert self._process is not None
        client = Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.2)
        try:
            async with asyncio.timeout(5):
                while not await self._answers_ping(client):
                    if self._process.returncode is not None:
                        pytest.fail(f"redis-server exited with {self._process.returncode}")
                    await asyncio.sleep(0.02)  # poll interval, not a readiness guess
        except TimeoutError:
            pytest.fail("redis-server did not answer PING within 5 s")
        finally:
            await client.aclose()

    @staticmethod
    async def _answers_ping(client: Redis) -> bool:
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False


async def hits_in_redis(url: str, key: str) -> int:
    """How many hits Redis holds for ``key``, through a fresh connection."""
    inspector = Redis.from_url(url, socket_timeout=1)
    try:
        count: int = await inspector.zcard(key)
        return count
    finally:
        await inspector.aclose()


def status(limiter: FallbackRateLimiter) -> str:
    return limiter.status  # a call, so mypy does not pin the property's value


class CountingLimiter(RateLimiter):
    """Counts the checks that reach the wrapped limiter."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner
        self.calls = 0

    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        self.calls += 1
        return await self.inner.hit(key, limit)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_fallback_keeps_answering_during_an_outage_and_recovers(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="identity.adapters.ratelimit.fallback")
    clock = FakeMonotonic()
    client = create_rate_limit_redis(private_redis.url)
    redis_limiter = CountingLimiter(RedisRateLimiter(client, key_prefix="rl:"))
    limiter = FallbackRateLimiter(
        redis_limiter,
        MemoryRateLimiter(SystemClock()),
        retry_interval=5.0,
        clock=clock,
    )
    limit = RateLimit(count=3, period_seconds=60)
    try:
        assert (await limiter.hit(ALICE, limit)).allowed
        assert status(limiter) == "ok"
        assert await hits_in_redis(private_redis.url, "rl:" + ALICE) == 1

        await private_redis.stop()
        during = [await limiter.hit(ALICE, limit) for _ in range(4)]
        # The memory limiter starts from zero: per-process limits while degraded.
        assert [d.allowed for d in during] == [True, True, True, False]
        assert status(limiter) == "degraded"
        clock.now += 6  # past the retry interval: Redis is tried again, still dead
        assert not (await limiter.hit(ALICE, limit)).allowed
        assert status(limiter) == "degraded"
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert ALICE not in warnings[0].getMessage()
        assert redis_limiter.calls == 3  # first hit, the failure, one retry

        await private_redis.start()
        # Within the retry interval Redis is not tried: the hit stays in memory.
        assert (await limiter.hit("b", limit)).allowed
        assert status(limiter) == "degraded"
        assert await hits_in_redis(private_redis.url, "rl:b") == 0

        clock.now += 6
        assert (await limiter.hit("b", limit)).allowed
        assert status(limiter) == "ok"
        assert await hits_in_redis(private_redis.url, "rl:b") == 1
        assert (await limiter.hit("b", limit)).remaining == 1  # counted in Redis
        assert await hits_in_redis(private_redis.url, "rl:b") == 2
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        await client.aclose()
