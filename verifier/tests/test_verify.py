"""``Verifier.verify`` against a real identity server: what passes and what does not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from identity.adapters.jwt_tokens import JwtTokenCodec

from identity_verifier import InvalidToken, Verifier

from identity_server import IdentityServer


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return decoded


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return unb64(header), unb64(payload), signature


def forge(header: dict[str, Any], payload: dict[str, Any], signature: str = "") -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{signature}"


async def reason_of(verifier: Verifier, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    return caught.value.reason


async def test_a_valid_access_token_gives_its_claims(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    tokens = await identity_server.sign_up("ada@example.com")

    claims = await make_verifier().verify(tokens["access_token"])

    assert claims["sub"] == tokens["user"]["id"]
    assert claims["email"] == "ada@example.com"
    assert claims["typ"] == "access"
    assert claims["iss"] == identity_server.issuer


@pytest.mark.server_env(SIGNING_ALGORITHM="RS256")
async def test_rs256_tokens_verify_and_an_eddsa_header_on_them_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    header, payload, signature = segments(token)
    assert header["alg"] == "RS256"
    verifier = make_verifier()

    assert (await verifier.verify(token))["typ"] == "access"
    forged = forge({**header, "alg": "EdDSA"}, payload, signature)
    assert await reason_of(verifier, forged) == "algorithm not allowed"


async def test_expired_token_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    assert await reason_of(make_verifier(), identity_server.expired_access_token()) == (
        "token expired"
    )


async def test_tampered_token_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    token = (await identity_server.sign_up())["access_token"]
    header, payload, signature = segments(token)
    payload["email"] = "admin@example.com"

    assert await reason_of(make_verifier(), forge(header, payload, signature)) == "bad signature"


async def test_wrong_audience_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    token = (await identity_server.sign_up())["access_token"]

    assert await reason_of(make_verifier(audience="billing"), token) == "wrong audience"


async def test_wrong_issuer_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    verifier = make_verifier()
    await verifier.verify((await identity_server.sign_up())["access_token"])  # keys fetched
    # Signed by the server's real key, but claiming another issuer.
    impostor = JwtTokenCodec(
        identity_server.codec.keyring,
        issuer="https://evil.example.com",
        audience="identity",
        leeway_seconds=30,
    )
    claims = identity_server.codec.decode_access(
        (await identity_server.sign_up())["access_token"]
    )

    assert await reason_of(verifier, impostor.encode_access(claims)) == "wrong issuer"


async def test_alg_none_is_refused(
    identity_server: IdentityServer,
    make_verifier: Callable[..., Verifier],
    jwks_requests: Any,
) -> None:
    header, payload, _ = segments((await identity_server.sign_up())["access_token"])

    reason = await reason_of(make_verifier(), forge({**header, "alg": "none"}, payload))

    assert reason == "algorithm not allowed"
    assert jwks_requests.paths == []  # refused before any key was looked up


async def test_hs256_keyed_with_the_public_key_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    header, payload, _ = segments((await identity_server.sign_up())["access_token"])
    public = identity_server.codec.keyring.current.public_key
    verifier = make_verifier()
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
    ):
        unsigned = forge({**header, "alg": "HS256"}, payload)
        mac = hmac.new(secret, unsigned.rstrip(".").encode(), hashlib.sha256).digest()

        assert await reason_of(verifier, unsigned + b64(mac)) == "algorithm not allowed"


async def test_rs256_header_on_an_eddsa_key_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    header, payload, signature = segments((await identity_server.sign_up())["access_token"])

    reason = await reason_of(make_verifier(), forge({**header, "alg": "RS256"}, payload, signature))

    assert reason == "algorithm not allowed"


async def test_refresh_token_is_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    token = (await identity_server.sign_up())["refresh_token"]

    # Refresh tokens are MACed by the service (HS256): refused before any key is read.
    assert await reason_of(make_verifier(), token) == "algorithm not allowed"


async def test_malformed_tokens_are_refused(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    verifier = make_verifier()
    for junk in ["", "abc", "a.b.c", "W10.e30.", "x" * 5000, "a.b.c.d"]:
        assert await reason_of(verifier, junk) == "malformed token", junk
    assert await reason_of(verifier, "e30.e30.") == "algorithm not allowed"  # header {}


async def test_tenant_pins_the_tid_claim(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    acme = await identity_server.app_container().tenant_admin().create("acme", "Acme")
    default_token = (await identity_server.sign_up())["access_token"]
    acme_token = (await identity_server.sign_up(headers={"X-Tenant": "acme"}))["access_token"]
    verifier = make_verifier(tenant=str(acme.id))

    assert (await verifier.verify(acme_token))["tid"] == str(acme.id)
    assert await reason_of(verifier, default_token) == "token of another tenant"


async def test_require_aal2_refuses_a_single_factor_session_and_takes_a_second(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    single = (await identity_server.sign_up())["access_token"]
    double = (await identity_server.sign_up_with_second_factor())["access_token"]
    verifier = make_verifier(require_aal2=True)

    assert "aal2" in await reason_of(verifier, single)
    claims = await verifier.verify(double)
    assert claims["aal"] == "aal2" and claims["amr"][0] == "pwd" and len(claims["amr"]) == 2
    assert (await make_verifier().verify(single))["aal"] == "aal1"


async def client_credentials_token(identity_server: IdentityServer, scope: str) -> str:
    """An RFC 9068 access token of an OAuth client, from the server's token endpoint."""
    from identity.application.oauth_clients import ClientSpec

    container = identity_server.app_container()
    await container.tenant_admin().set("default", "oauth_scopes", "payments:read,payments:write")
    tenant = await container.resolve_tenant()("default")
    new = await container.client_admin().create(tenant, ClientSpec(name="billing"))
    assert new.secret is not None
    basic = base64.b64encode(f"{new.client.client_id}:{new.secret}".encode()).decode()
    answer = await identity_server.post_form(
        "/oauth2/token",
        {"grant_type": "client_credentials", "scope": scope},
        headers={"Authorization": f"Basic {basic}"},
    )
    token: str = answer["access_token"]
    return token


async def test_an_oauth_client_access_token_verifies_and_its_scopes_are_required(
    identity_server: IdentityServer, make_verifier: Callable[..., Verifier]
) -> None:
    from identity_verifier import InsufficientScope, require_scope

    token = await client_credentials_token(identity_server, "payments:read")
    header, payload, _ = segments(token)
    assert header["typ"] == "at+jwt"
    verifier = make_verifier()
    claims = await verifier.verify(token)
    assert claims["client_id"] == claims["sub"] and claims["scope"] == "payments:read"
    require_scope(claims, "payments:read")
    with pytest.raises(InsufficientScope) as caught:
        verifier.require_scope(claims, "payments:read", "payments:write")
    assert caught.value.missing == ["payments:write"]
    # An at+jwt token without client_id (signed by the issuer's own key) is refused.
    import jwt as pyjwt

    key = identity_server.codec.keyring.current
    unowned = pyjwt.encode(
        {k: v for k, v in payload.items() if k != "client_id"},
        key.private_key,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    assert await reason_of(verifier, unowned) == "not an access token"
    # identity's own access tokens carry no scope: require_scope refuses them.
    own = await verifier.verify((await identity_server.sign_up())["access_token"])
    with pytest.raises(InsufficientScope):
        require_scope(own, "payments:read")
