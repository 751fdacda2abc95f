"""``introspect_with=``: the verifier asks the real introspection endpoint (discovered:
``/oauth2/introspect``), caching briefly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from identity_verifier import InvalidToken, IssuerUnavailable, Verifier

from conftest import ManualClock, RequestLog
from identity_server import IdentityServer

INTROSPECT = "/oauth2/introspect"  # the discovered introspection_endpoint


async def test_a_logout_is_seen_once_the_cached_answer_expires(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
    clock: ManualClock,
) -> None:
    key = await identity_server.api_key("tokens:introspect")
    tokens = await identity_server.sign_up()
    verifier = make_verifier(introspect_with=key, introspection_ttl=5, clock=clock)
    assert (await verifier.verify(tokens["access_token"]))["sub"] == tokens["user"]["id"]

    await identity_server.log_out(tokens["refresh_token"])

    await verifier.verify(tokens["access_token"])  # the answer of a moment ago stands
    assert jwks_requests.count(INTROSPECT) == 1
    clock.advance(5)
    with pytest.raises(InvalidToken, match="no longer active"):
        await verifier.verify(tokens["access_token"])
    assert jwks_requests.count(INTROSPECT) == 2


async def test_without_a_cache_a_logout_is_seen_at_once(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    key = await identity_server.api_key("tokens:introspect")
    tokens = await identity_server.sign_up()
    verifier = make_verifier(introspect_with=key, introspection_ttl=0)
    plain = make_verifier()
    await verifier.verify(tokens["access_token"])

    await identity_server.log_out(tokens["refresh_token"])

    with pytest.raises(InvalidToken, match="no longer active"):
        await verifier.verify(tokens["access_token"])
    # The signature alone cannot know: that is what introspect_with is for.
    assert (await plain.verify(tokens["access_token"]))["sub"] == tokens["user"]["id"]


async def test_concurrent_checks_of_one_token_make_one_introspection_request(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
) -> None:
    key = await identity_server.api_key("tokens:introspect")
    token = (await identity_server.sign_up())["access_token"]
    verifier = make_verifier(introspect_with=key)

    answers = await asyncio.gather(*(verifier.verify(token) for _ in range(30)))

    assert len({claims["jti"] for claims in answers}) == 1
    assert jwks_requests.count(INTROSPECT) == 1


async def test_a_key_without_the_scope_makes_the_issuer_unavailable_not_the_token_invalid(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    key = await identity_server.api_key("users:read")
    token = (await identity_server.sign_up())["access_token"]

    with pytest.raises(IssuerUnavailable):
        await make_verifier(introspect_with=key).verify(token)


async def test_introspection_is_asked_only_about_tokens_that_verify(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: RequestLog,
) -> None:
    key = await identity_server.api_key("tokens:introspect")
    tokens = await identity_server.sign_up()
    verifier = make_verifier(introspect_with=key)

    for token in (tokens["refresh_token"], identity_server.expired_access_token(), "junk"):
        with pytest.raises(InvalidToken):
            await verifier.verify(token)

    assert jwks_requests.count(INTROSPECT) == 0
    assert key not in repr(verifier)
