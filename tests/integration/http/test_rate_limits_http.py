"""Rate limits over HTTP (contract section 5) on the real app and a migrated Postgres:
the per-email login limit, the global per-IP limit and its headers, X-Forwarded-For
from trusted proxies only, and the Redis limiter through an outage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from redis.asyncio import Redis

from identity.adapters.ratelimit import FallbackRateLimiter
from identity.entrypoints.http.app import build_container
from tests.integration.http.conftest import PASSWORD, Api, MakeApi, problem_of
from tests.integration.test_redis_outage import REDIS_SERVER, FakeMonotonic, PrivateRedis, free_port

RATE_LIMIT_NAMES = ("Limit", "Remaining", "Reset")


def rate_limit_headers(response: ClientResponse) -> dict[str, str]:
    """The ``RateLimit-*`` headers, checked against their ``X-RateLimit-*`` twins."""
    values = {name: response.headers.get(f"RateLimit-{name}") for name in RATE_LIMIT_NAMES}
    twins = {name: response.headers.get(f"X-RateLimit-{name}") for name in RATE_LIMIT_NAMES}
    assert values == twins
    assert all(value is not None for value in values.values()), dict(response.headers)
    return {name: str(value) for name, value in values.items()}


async def assert_rate_limited(response: ClientResponse, limit: int) -> dict[str, Any]:
    body = await problem_of(response, 429, "rate_limited")
    headers = rate_limit_headers(response)
    assert headers["Limit"] == str(limit)
    assert headers["Remaining"] == "0"
    assert 1 <= int(headers["Reset"]) <= 60
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    return body


async def log_in(api: Api, email: str, password: str = "not the password") -> ClientResponse:
    return await api.post("/auth/login", {"email": email, "password": password})


async def test_the_login_limit_counts_per_email_alike_for_known_and_unknown_emails(
    make_api: MakeApi,
) -> None:
    api = await make_api(RATE_LIMIT_LOGIN="3/minute")
    response = await api.post(
        "/auth/register", {"email": "alice@example.com", "password": PASSWORD}
    )
    assert response.status == 202, await response.text()

    for _ in range(3):
        await problem_of(await log_in(api, "alice@example.com"), 401, "invalid_credentials")
    known = await log_in(api, "alice@example.com")
    known_body = await assert_rate_limited(known, 3)
    # Counted on the normalised email, and before the password is looked at.
    await assert_rate_limited(await log_in(api, " ALICE@Example.COM", PASSWORD), 3)

    # Another email has its own budget.
    await problem_of(await log_in(api, "bob@example.com"), 401, "invalid_credentials")

    for _ in range(3):
        await problem_of(await log_in(api, "nobody@example.com"), 401, "invalid_credentials")
    unknown = await log_in(api, "nobody@example.com")
    unknown_body = await assert_rate_limited(unknown, 3)
    # Nothing tells whether the email has an account.
    assert unknown_body == known_body
    assert set(unknown.headers) - {"X-Request-ID"} == set(known.headers) - {"X-Request-ID"}


async def test_the_global_limit_counts_every_request_of_an_ip_except_health(
    make_api: MakeApi,
) -> None:
    api = await make_api(RATE_LIMIT_GLOBAL="4/minute")
    remaining = []
    for _ in range(4):
        response = await api.get("/.well-known/jwks.json")
        assert response.status == 200
        headers = rate_limit_headers(response)
        assert headers["Limit"] == "4"
        assert 1 <= int(headers["Reset"]) <= 60
        remaining.append(int(headers["Remaining"]))
    assert remaining == [3, 2, 1, 0]

    await assert_rate_limited(await api.get("/.well-known/jwks.json"), 4)
    # The per-IP limit comes first, whatever the endpoint.
    await assert_rate_limited(await log_in(api, "alice@example.com"), 4)
    await assert_rate_limited(await api.get("/no/such/page"), 4)

    for _ in range(10):
        health = await api.get("/health")
        assert health.status == 200
        assert "RateLimit-Limit" not in health.headers
        assert "Retry-After" not in health.headers


async def test_forwarded_for_from_a_trusted_proxy_gives_each_client_its_own_budget(
    make_api: MakeApi,
) -> None:
    api = await make_api(RATE_LIMIT_GLOBAL="2/minute", TRUSTED_PROXIES="127.0.0.1/32")

    async def get(forwarded_for: str) -> ClientResponse:
        return await api.get("/.well-known/jwks.json", headers={"X-Forwarded-For": forwarded_for})

    for _ in range(2):
        assert (await get("203.0.113.1")).status == 200
    await assert_rate_limited(await get("203.0.113.1"), 2)
    # A client address written by the client, left of the proxy's, counts for nothing.
    await assert_rate_limited(await get("198.51.100.9, 203.0.113.1"), 2)
    assert (await get("203.0.113.2")).status == 200

    # An IPv6 client holds a whole /64: its addresses share one budget.
    assert (await get("2001:db8::1")).status == 200
    assert (await get("2001:db8::2")).status == 200
    await assert_rate_limited(await get("2001:db8::ffff:1"), 2)
    assert (await get("2001:db8:0:1::1")).status == 200


async def test_forwarded_for_from_an_untrusted_peer_changes_nothing(make_api: MakeApi) -> None:
    api = await make_api(RATE_LIMIT_GLOBAL="2/minute")

    async def get(forwarded_for: str | None) -> ClientResponse:
        headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
        return await api.get("/.well-known/jwks.json", headers=headers)

    assert (await get("203.0.113.1")).status == 200
    assert (await get("203.0.113.2")).status == 200
    await assert_rate_limited(await get("203.0.113.3"), 2)
    await assert_rate_limited(await get(None), 2)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH; this test starts and stops its own server")
    server = PrivateRedis(free_port(), tmp_path)
    await server.start()
    yield server
    await server.stop()


async def hits_in_redis(url: str, key: str) -> int:
    inspector = Redis.from_url(url, socket_timeout=1)
    try:
        count: int = await inspector.zcard(key)
        return count
    finally:
        await inspector.aclose()


async def rate_limiter_check(api: Api) -> str:
    response = await api.get("/health")
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "ok"
    return str(body["checks"]["rate_limiter"])


async def test_the_redis_limiter_keeps_serving_through_an_outage_and_recovers(
    make_api: MakeApi, settings_for: Any, private_redis: PrivateRedis
) -> None:
    container = build_container(settings_for(REDIS_URL=private_redis.url))
    # The container's own Redis limiter, with a clock the test moves past the
    # fallback's retry interval instead of waiting for it.
    clock = FakeMonotonic()
    container.rate_limiter.providers["redis"].add_kwargs(clock=clock)
    api = await make_api(container=container)
    assert isinstance(container.rate_limiter(), FallbackRateLimiter)
    key = "identity:rl:ip:127.0.0.1"

    assert await rate_limiter_check(api) == "ok"
    assert (await api.get("/.well-known/jwks.json")).status == 200
    assert await hits_in_redis(private_redis.url, key) == 1

    await private_redis.stop()
    response = await api.get("/.well-known/jwks.json")
    assert response.status == 200
    assert rate_limit_headers(response)["Limit"] == "100000"
    await problem_of(await log_in(api, "alice@example.com"), 401, "invalid_credentials")
    assert await rate_limiter_check(api) == "degraded"

    await private_redis.start()  # empty: it keeps nothing on disk
    clock.now += 6  # past the retry interval: the next check tries Redis again
    assert (await api.get("/.well-known/jwks.json")).status == 200
    assert await rate_limiter_check(api) == "ok"
    assert await hits_in_redis(private_redis.url, key) == 1
