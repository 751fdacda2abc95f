"""The key cache against a real identity server: rotation, floods, bursts, outages."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from identity_verifier import InvalidToken, IssuerUnavailable, Verifier

from conftest import ManualClock, RequestLog
from identity_server import IdentityServer
from test_verify import forge, segments

JWKS = "/.well-known/jwks.json"
DISCOVERY = "/.well-known/openid-configuration"


def with_kid(token: str, kid: str) -> str:
    header, payload, signature = segments(token)
    return forge({**header, "kid": kid}, payload, signature)


async def test_a_concurrent_burst_on_a_cold_cache_makes_one_jwks_request(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    verifier = make_verifier()

    answers = await asyncio.gather(*(verifier.verify(token) for _ in range(50)))

    assert {claims["jti"] for claims in answers} == {answers[0]["jti"]}
    assert jwks_requests.count(JWKS) == 1
    assert jwks_requests.count(DISCOVERY) == 1


async def test_a_flood_of_junk_kids_fetches_at_most_once_per_30_seconds(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
    clock: ManualClock,
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    verifier = make_verifier(clock=clock)
    await verifier.verify(token)
    junk = [with_kid(token, uuid.uuid4().hex) for _ in range(200)]

    results = await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)

    assert all(isinstance(r, InvalidToken) and r.reason == "unknown signing key" for r in results)
    assert jwks_requests.count(JWKS) == 1  # the first load only
    clock.advance(29)
    await asyncio.gather(*(verifier.verify(t) for t in junk[:50]), return_exceptions=True)
    assert jwks_requests.count(JWKS) == 1
    clock.advance(2)  # 31 s after the last fetch: one more is allowed, and only one
    await asyncio.gather(*(verifier.verify(t) for t in junk), return_exceptions=True)
    assert jwks_requests.count(JWKS) == 2
    assert (await verifier.verify(token))["jti"]  # the real key still works


@pytest.mark.key_reload_seconds(0.05)
async def test_a_key_made_by_identity_keys_rotate_is_accepted_without_restart(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier], clock: ManualClock
) -> None:
    account = await identity_server.sign_up()
    old_token = account["access_token"]
    verifier = make_verifier(clock=clock)
    await verifier.verify(old_token)
    old_kid = segments(old_token)[0]["kid"]

    new_kid = await identity_server.rotate_keys()
    async with asyncio.timeout(10):
        # The server reloads on a timer of its own: polled, with a deadline.
        while identity_server.codec.keyring.current.kid != new_kid:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    new_token = (await identity_server.login(account["user"]["email"]))["access_token"]
    assert segments(new_token)[0]["kid"] == new_kid != old_kid
    clock.advance(31)  # a rotation comes long after a verifier's last fetch

    assert (await verifier.verify(new_token))["sub"] == account["user"]["id"]
    assert (await verifier.verify(old_token))["sub"] == account["user"]["id"]


async def test_with_keys_cached_verification_survives_the_issuer_going_down(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
    clock: ManualClock,
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    verifier = make_verifier(clock=clock)
    await verifier.verify(token)

    await identity_server.stop_listening()

    assert (await verifier.verify(token))["jti"]
    clock.advance(301)  # past the JWKS max-age: the refetch fails, the held keys stay
    assert (await verifier.verify(token))["jti"]
    assert jwks_requests.count(JWKS) == 2
    with pytest.raises(InvalidToken, match="unknown signing key"):
        await verifier.verify(with_kid(token, "gone"))


async def test_an_issuer_never_reached_is_unavailable_not_invalid(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
    clock: ManualClock,
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    await identity_server.stop_listening()
    verifier = make_verifier(clock=clock)

    for _ in range(3):
        with pytest.raises(IssuerUnavailable):
            await verifier.verify(token)

    assert len(jwks_requests.paths) == 1  # one try (discovery) per second at most


async def test_keys_are_refetched_when_their_max_age_has_passed(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
    clock: ManualClock,
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    verifier = make_verifier(clock=clock)
    await verifier.verify(token)

    clock.advance(299)
    await verifier.verify(token)
    assert jwks_requests.count(JWKS) == 1
    clock.advance(2)  # the server says max-age=300
    await verifier.verify(token)
    assert jwks_requests.count(JWKS) == 2
    assert jwks_requests.count(DISCOVERY) == 1
