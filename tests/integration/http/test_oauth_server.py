"""The authorization server over HTTP against Postgres (section 17): token endpoint,
discovery, the code flow driven by Authlib's OAuth client, the OpenID Connect Basic OP
checks, refresh rotation, userinfo, revocation, introspection, bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.jose import JsonWebKey
from authlib.jose import jwt as authlib_jwt
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.domain.oauth import AuthMethod
from tests.integration.http.oauth_support import (
    BROWSER_COOKIE,
    RESOURCE,
    OAuthApi,
    start_oauth_api,
)
from tests.smtp_server import SmtpTestServer

RP = "https://rp.example/cb"


@pytest.fixture
async def oauth(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> OAuthApi:
    return await start_oauth_api(smtp, migrated_postgres_url, aiohttp_client)


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def token_request(
    oauth: OAuthApi, data: dict[str, str], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], Any]:
    response = await oauth.api.client.post("/oauth2/token", data=data, headers=headers or {})
    assert response.headers["Cache-Control"] == "no-store"
    return response.status, await response.json(), response.headers


async def jwks(oauth: OAuthApi) -> dict[str, Any]:
    return dict(await (await oauth.api.get("/.well-known/jwks.json")).json())


# --- discovery -----------------------------------------------------------------------


async def test_one_metadata_document_under_both_names(oauth: OAuthApi) -> None:
    first = await (await oauth.api.get("/.well-known/openid-configuration")).json()
    second = await (await oauth.api.get("/.well-known/oauth-authorization-server")).json()
    assert first == second
    assert first["issuer"] == oauth.api.settings.issuer
    assert first["authorization_endpoint"] == f"{oauth.base}/oauth2/authorize"
    assert first["response_types_supported"] == ["code"]
    assert first["code_challenge_methods_supported"] == ["S256"]
    assert "RS256" in first["id_token_signing_alg_values_supported"]
    assert first["subject_types_supported"] == ["public"]
    assert first["authorization_response_iss_parameter_supported"] is True
    assert set(first["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert "implicit" not in str(first) and "password" not in first["grant_types_supported"]


# --- client credentials --------------------------------------------------------------


async def test_client_credentials_issues_an_rfc_9068_access_token(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(redirect_uris=())
    status, body, _ = await token_request(
        oauth,
        {"grant_type": "client_credentials", "scope": "payments:read", "resource": RESOURCE},
        basic(client_id, secret),
    )
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "payments:read"
    assert "refresh_token" not in body and "id_token" not in body
    header = jwt.get_unverified_header(body["access_token"])
    assert header["typ"] == "at+jwt"
    key = jwt.PyJWKSet.from_dict(await jwks(oauth))[header["kid"]]
    claims = jwt.decode(
        body["access_token"],
        key.key,
        algorithms=[header["alg"]],
        audience=RESOURCE,
        issuer=oauth.api.settings.issuer,
    )
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "payments:read"
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope", "tid"} <= set(claims)
    # Not a token of the JSON API, nor the reverse.
    response = await oauth.api.me(body["access_token"])
    assert response.status == 401

    # Introspection with the client's own authentication sees it active.
    answer = await oauth.api.client.post(
        "/oauth2/introspect", data={"token": body["access_token"]}, headers=basic(client_id, secret)
    )
    introspected = await answer.json()
    assert introspected["active"] is True and introspected["client_id"] == client_id
    assert introspected["aud"] == RESOURCE and introspected["scope"] == "payments:read"
    # Revoked: inactive at once.
    revoked = await oauth.api.client.post(
        "/oauth2/revoke", data={"token": body["access_token"]}, headers=basic(client_id, secret)
    )
    assert revoked.status == 200
    answer = await oauth.api.client.post(
        "/oauth2/introspect", data={"token": body["access_token"]}, headers=basic(client_id, secret)
    )
    assert await answer.json() == {"active": False}


async def test_client_authentication_failures_are_invalid_client_401(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(redirect_uris=())
    grant = {"grant_type": "client_credentials"}
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        (grant, basic(client_id, secret + "x")),  # wrong secret
        (grant, basic("no-such-client", secret)),
        ({**grant, "client_id": client_id, "client_secret": secret}, {}),  # not its method
        ({**grant, "client_id": client_id}, {}),  # no authentication at all
        (grant, {"Authorization": "Basic !!!"}),
    ]
    for data, headers in cases:
        status, body, response_headers = await token_request(oauth, data, headers)
        assert status == 401, (data, body)
        assert body["error"] == "invalid_client"
        assert response_headers["WWW-Authenticate"].startswith("Basic")


async def test_public_clients_cannot_use_client_credentials(oauth: OAuthApi) -> None:
    client_id = await oauth.public()
    status, body, _ = await token_request(
        oauth, {"grant_type": "client_credentials", "client_id": client_id}
    )
    assert status == 400 and body["error"] == "unauthorized_client"


async def test_client_secret_post_and_private_key_jwt(oauth: OAuthApi) -> None:
    post_id, post_secret = await oauth.confidential(
        redirect_uris=(), token_endpoint_auth_method=AuthMethod.CLIENT_SECRET_POST
    )
    status, body, _ = await token_request(
        oauth,
        {"grant_type": "client_credentials", "client_id": post_id, "client_secret": post_secret},
    )
    assert status == 200, body

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    public_jwk |= {"kid": "k1", "alg": "RS256", "use": "sig"}
    jwt_id, _ = await oauth.client(
        redirect_uris=(),
        token_endpoint_auth_method=AuthMethod.PRIVATE_KEY_JWT,
        jwks={"keys": [public_jwk]},
    )

    def assertion(**changes: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": jwt_id,
            "sub": jwt_id,
            "aud": f"{oauth.base}/oauth2/token",
            "iat": now,
            "exp": now + 60,
            "jti": generate_token(16),
            **changes,
        }
        return jwt.encode(claims, private, algorithm="RS256", headers={"kid": "k1"})

    kind = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    good = assertion()
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": kind,
        "client_assertion": good,
    }
    status, body, _ = await token_request(oauth, data)
    assert status == 200, body
    # Replayed, wrong audience, expired, signed by another key: invalid_client.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        jwt.decode(assertion(), options={"verify_signature": False}),
        stranger,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    for bad in (
        good,
        assertion(aud="https://elsewhere.example/token"),
        assertion(exp=int(time.time()) - 300),
        forged,
    ):
        status, body, _ = await token_request(oauth, {**data, "client_assertion": bad})
        assert status == 401 and body["error"] == "invalid_client", body


async def test_bad_input_is_an_rfc_6749_error_never_a_500(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(redirect_uris=())
    auth = basic(client_id, secret)
    client = oauth.api.client
    cases: list[tuple[Any, dict[str, str], str]] = [
        ({"grant_type": "password"}, {}, "unsupported_grant_type"),
        ({}, {}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "x" * 5000}, {}, "invalid_request"),
        ({"grant_type": "client_credentials", "scope": "admin:all"}, {}, "invalid_scope"),
        (
            {"grant_type": "client_credentials", "resource": "https://evil.example"},
            {},
            "invalid_target",
        ),
        ({"grant_type": "authorization_code"}, {}, "unauthorized_client"),
    ]
    for data, extra, error in cases:
        response = await client.post("/oauth2/token", data=data, headers={**auth, **extra})
        body = await response.json()
        assert response.status == 400 and body["error"] == error, (data, body)
    # A JSON body, a repeated parameter, and junk.
    response = await client.post("/oauth2/token", json={"grant_type": "x"}, headers=auth)
    assert response.status == 400 and (await response.json())["error"] == "invalid_request"
    response = await client.post(
        "/oauth2/token",
        data="grant_type=client_credentials&grant_type=client_credentials",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (await response.json())["error"] == "invalid_request"
    response = await client.post(
        "/oauth2/token",
        data=b"\xff\xfe\x00",
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status in (400, 401)
    assert "error" in await response.json()


# The JSON endpoints under /oauth2/ (the browser's, authorize and logout, answer pages).
OAUTH_JSON_PATHS = (
    "/oauth2/token",
    "/oauth2/introspect",
    "/oauth2/revoke",
    "/oauth2/register",
    "/oauth2/userinfo",
)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def oauth_error(response: Any, status: int) -> dict[str, Any]:
    """The RFC 6749 error body of ``response``, with its status and no-store."""
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json()
    assert set(body) == {"error", "error_description"}, body
    return body


async def test_an_oversized_body_is_an_rfc_6749_error_or_an_error_page(oauth: OAuthApi) -> None:
    client = oauth.api.client
    big = "token=" + "x" * (64 * 1024)
    for path in OAUTH_JSON_PATHS:
        # Refused on its Content-Length, before the endpoint runs.
        response = await client.post(path, data=big, headers=FORM)
        body = await oauth_error(response, 413)
        assert body["error"] == "invalid_request" and "64 KiB" in body["error_description"]

    async def chunks() -> Any:
        for _ in range(70):
            yield b"x" * 1024

    # No Content-Length (chunked): refused when the endpoint reads the form.
    response = await client.post("/oauth2/token", data=chunks(), headers=FORM)
    assert (await oauth_error(response, 413))["error"] == "invalid_request"
    for path in ("/oauth2/authorize", "/oauth2/logout"):
        response = await client.post(path, data=big, headers=FORM)
        assert response.status == 413 and response.content_type == "text/html"
        assert "64 KiB" in await response.text()
    # A method the endpoint does not have, as well.
    response = await client.get("/oauth2/token")
    assert (await oauth_error(response, 405))["error"] == "invalid_request"
    assert response.headers["Allow"] == "POST"


async def test_the_global_rate_limit_is_an_rfc_6749_error_or_an_error_page(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    oauth = await start_oauth_api(
        smtp, migrated_postgres_url, aiohttp_client, RATE_LIMIT_GLOBAL="2/minute"
    )
    client = oauth.api.client
    for _ in range(2):
        response = await client.post("/oauth2/token", data={"grant_type": "client_credentials"})
        assert response.status == 401
    for path in OAUTH_JSON_PATHS:
        response = await client.post(path, data={"token": "t"})
        body = await oauth_error(response, 429)
        assert body["error"] == "too_many_requests", body
        assert int(response.headers["Retry-After"]) >= 1
    response = await client.get("/oauth2/authorize", params={"client_id": "x"})
    assert response.status == 429 and response.content_type == "text/html"
    assert int(response.headers["Retry-After"]) >= 1
    # Elsewhere the JSON API's problem, as before.
    response = await client.get("/auth/me")
    assert response.status == 429 and response.content_type == "application/problem+json"


# --- the authorization code flow -----------------------------------------------------


async def authorize(
    oauth: OAuthApi, params: dict[str, str], cookie: str | None = None
) -> httpx.Response:
    cookies = {BROWSER_COOKIE: cookie} if cookie else {}
    async with httpx.AsyncClient(cookies=cookies) as browser:
        return await browser.get(f"{oauth.base}/oauth2/authorize", params=params)


def code_params(client_id: str, verifier: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": RP,
        "scope": "openid email profile offline_access",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }


def redirected(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def test_authlib_client_runs_the_code_flow_with_pkce(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    cookie, _ = await oauth.sign_in_browser("rp-user@example.com", full_name="Ada Lovelace")
    nonce = generate_token(20)
    verifier = generate_token(48)
    async with AsyncOAuth2Client(
        client_id,
        secret,
        scope="openid email profile offline_access",
        redirect_uri=RP,
        code_challenge_method="S256",
    ) as rp:
        url, state = rp.create_authorization_url(
            f"{oauth.base}/oauth2/authorize", code_verifier=verifier, nonce=nonce
        )
        async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
            response = await browser.get(url)
        assert response.status_code == 302, response.text
        location = response.headers["location"]
        returned = parse_qs(urlsplit(location).query)
        assert returned["state"] == [state] and returned["iss"] == [oauth.api.settings.issuer]
        token = await rp.fetch_token(
            f"{oauth.base}/oauth2/token", authorization_response=location, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer" and token["refresh_token"]

        key_set = JsonWebKey.import_key_set(await jwks(oauth))
        claims = authlib_jwt.decode(
            token["id_token"],
            key_set,
            claims_cls=CodeIDToken,
            claims_options={"iss": {"value": oauth.api.settings.issuer}},
            claims_params={"nonce": nonce, "client_id": client_id},
        )
        claims.params["access_token"] = token["access_token"]
        claims.validate()  # iss, aud, exp, iat, nonce, azp, at_hash
        assert claims["aud"] == client_id and claims["azp"] == client_id
        assert claims["email"] == "rp-user@example.com" and claims["name"] == "Ada Lovelace"
        assert claims["acr"] == "aal1" and claims["sid"] and claims["auth_time"]
        assert jwt.get_unverified_header(token["id_token"])["alg"] == "RS256"

        info = await rp.get(f"{oauth.base}/oauth2/userinfo")
        assert info.status_code == 200
        assert info.json() == {
            "sub": claims["sub"],
            "email": "rp-user@example.com",
            "email_verified": True,
            "name": "Ada Lovelace",
        }
        refreshed = await rp.refresh_token(f"{oauth.base}/oauth2/token")
        assert refreshed["refresh_token"] != token["refresh_token"]
        assert refreshed["access_token"] != token["access_token"]


async def test_a_code_is_single_use_and_its_replay_ends_what_it_issued(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    cookie, _ = await oauth.sign_in_browser("replay@example.com")
    verifier = generate_token(48)
    code = redirected(await authorize(oauth, code_params(client_id, verifier), cookie))["code"]
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": RP,
        "code_verifier": verifier,
    }
    status, tokens, _ = await token_request(oauth, exchange, basic(client_id, secret))
    assert status == 200
    status, body, _ = await token_request(oauth, exchange, basic(client_id, secret))
    assert status == 400 and body["error"] == "invalid_grant"
    # Everything issued from the code is revoked: refresh and introspection both dead.
    status, body, _ = await token_request(
        oauth,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        basic(client_id, secret),
    )
    assert status == 400 and body["error"] == "invalid_grant"
    answer = await oauth.api.client.post(
        "/oauth2/introspect",
        data={"token": tokens["access_token"]},
        headers=basic(client_id, secret),
    )
    assert await answer.json() == {"active": False}


async def test_code_exchange_checks(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    other_id, other_secret = await oauth.confidential(first_party=True)
    cookie, _ = await oauth.sign_in_browser("checks@example.com")

    async def fresh_code(verifier: str) -> str:
        return redirected(await authorize(oauth, code_params(client_id, verifier), cookie))["code"]

    verifier = generate_token(48)
    wrong = [
        ({"code_verifier": generate_token(48)}, basic(client_id, secret), "invalid_grant"),
        ({"redirect_uri": "https://rp.example/other"}, basic(client_id, secret), "invalid_grant"),
        ({}, basic(other_id, other_secret), "invalid_grant"),  # another client's code
        ({}, basic(client_id, "wrong"), "invalid_client"),
    ]
    for change, headers, error in wrong:
        code = await fresh_code(verifier)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
            **change,
        }
        _, body, _ = await token_request(oauth, data, headers)
        assert body["error"] == error, (change, body)
        if error == "invalid_grant":
            # The refusal spent the code: the right request cannot redeem it now.
            right = {**data, "code_verifier": verifier, "redirect_uri": RP}
            _, body, _ = await token_request(oauth, right, basic(client_id, secret))
            assert body == {"error": "invalid_grant", "error_description": "code already used"}
    # The sign-in ended between the authorization and the exchange.
    ended_cookie, tokens = await oauth.sign_in_browser("ended@example.com")
    params = code_params(client_id, verifier)
    code = redirected(await authorize(oauth, params, ended_cookie))["code"]
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    async with oauth.api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        assert await uow.sessions.revoke(tenant.id, uuid.UUID(sid), datetime.now(UTC), "logout")
        await uow.commit()
    exchange = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": RP,
        "code_verifier": verifier,
    }
    _, body, _ = await token_request(oauth, exchange, basic(client_id, secret))
    assert body["error"] == "invalid_grant" and "sign-in has ended" in body["error_description"]
    # An expired code: 60 seconds.
    code = await fresh_code(verifier)
    async with oauth.api.container.uow() as uow:
        from sqlalchemy import update

        from identity.adapters.sqlalchemy import tables as t

        connection = uow._connection
        await connection.execute(
            update(t.oauth_codes).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await uow.commit()
    _, body, _ = await token_request(
        oauth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        basic(client_id, secret),
    )
    assert body["error"] == "invalid_grant"


async def test_authorize_error_page_for_unknown_client_or_redirect(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential()
    verifier = generate_token(48)
    for params in (
        code_params("no-such-client", verifier),
        code_params(client_id, verifier, redirect_uri="https://evil.example/cb"),
        code_params(client_id, verifier, redirect_uri=RP + "#fragment"),
        code_params(client_id, verifier, redirect_uri=RP + "/"),
    ):
        response = await authorize(oauth, params)
        assert response.status_code == 400, params
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/html")


LOOPBACK = "http://127.0.0.1:5123/callback"  # the registered loopback URI, another port


def without_nonce(params: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in params.items() if k != "nonce"}


async def test_other_authorize_errors_redirect_with_state_and_iss(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential(first_party=True)
    public_id = await oauth.public()
    cookie, _ = await oauth.sign_in_browser("errors@example.com")
    verifier = generate_token(48)
    cases = [
        (code_params(client_id, verifier, response_type="token"), "unsupported_response_type"),
        (code_params(client_id, verifier, code_challenge_method="plain"), "invalid_request"),
        (
            {k: v for k, v in code_params(client_id, verifier).items() if k != "code_challenge"},
            "invalid_request",
        ),
        (code_params(client_id, verifier, scope="openid admin"), "invalid_scope"),
        (code_params(client_id, verifier, resource="https://evil.example"), "invalid_target"),
        (code_params(client_id, verifier, prompt="none bogus"), "invalid_request"),
        (code_params(client_id, verifier, max_age="soon"), "invalid_request"),
        (code_params(client_id, verifier, state="s" * 3000), "invalid_request"),
        (without_nonce(code_params(public_id, verifier, redirect_uri=LOOPBACK)), "invalid_request"),
    ]
    for params, error in cases:
        got = redirected(await authorize(oauth, params, cookie))
        assert got["error"] == error, (params, got)
        assert got["iss"] == oauth.api.settings.issuer
        if len(params.get("state", "")) < 100:
            assert got["state"] == params.get("state")
    # A repeated parameter.
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
        query = "&".join(f"{k}={v}" for k, v in code_params(client_id, verifier).items())
        response = await browser.get(f"{oauth.base}/oauth2/authorize?{query}&scope=openid")
    assert redirected(response)["error"] == "invalid_request"


async def test_prompt_max_age_and_the_sign_in_round_trip(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    verifier = generate_token(48)
    # No browser session: to the sign-in page, and back to authorize afterwards.
    response = await authorize(oauth, code_params(client_id, verifier, login_hint="x@y.z"))
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert location.path == "/ui/sign-in"
    query = parse_qs(location.query)
    assert query["login_hint"] == ["x@y.z"]
    assert query["return_to"][0].startswith("/oauth2/authorize?")
    # prompt=none without one: login_required, redirected with state and iss.
    got = redirected(await authorize(oauth, code_params(client_id, verifier, prompt="none")))
    assert got["error"] == "login_required" and got["state"] == "st-1"

    cookie, tokens = await oauth.sign_in_browser("prompts@example.com")
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    # prompt=login: the sign-in page even with a session; its return trip comes back
    # without prompt=login and demands a sign-in newer than the request.
    response = await authorize(oauth, code_params(client_id, verifier, prompt="login"), cookie)
    assert urlsplit(response.headers["location"]).path == "/ui/sign-in"
    return_to = parse_qs(urlsplit(response.headers["location"]).query)["return_to"][0]
    assert "prompt=login" not in return_to
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
        again = await browser.get(f"{oauth.base}{return_to}")
    assert urlsplit(again.headers["location"]).path == "/ui/sign-in"  # still the old sign-in
    newer = await oauth.browser_for(sid, auth_time=datetime.now(UTC) + timedelta(seconds=2))
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: newer}) as browser:
        done = await browser.get(f"{oauth.base}{return_to}")
    assert "code" in redirected(done)

    # max_age: a sign-in older than it goes to the sign-in page; auth_time is in the ID token.
    old = await oauth.browser_for(sid, auth_time=datetime.now(UTC) - timedelta(minutes=10))
    response = await authorize(oauth, code_params(client_id, verifier, max_age="60"), old)
    assert urlsplit(response.headers["location"]).path == "/ui/sign-in"
    response = await authorize(oauth, code_params(client_id, verifier, max_age="3600"), old)
    code = redirected(response)["code"]
    status, answer, _ = await token_request(
        oauth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        basic(client_id, secret),
    )
    assert status == 200
    id_claims = jwt.decode(answer["id_token"], options={"verify_signature": False})
    assert abs(id_claims["auth_time"] - (time.time() - 600)) < 30


async def test_third_party_clients_ask_for_consent_once_per_new_scope(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential(first_party=False)
    cookie, _ = await oauth.sign_in_browser("consent@example.com")
    verifier = generate_token(48)
    params = code_params(client_id, verifier, scope="openid email")
    got = redirected(await authorize(oauth, {**params, "prompt": "none"}, cookie))
    assert got["error"] == "consent_required"
    response = await authorize(oauth, params, cookie)
    consent_url = response.headers["location"]
    assert urlsplit(consent_url).path == "/ui/consent"
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
        page = await browser.get(f"{oauth.base}{consent_url}")
        assert page.status_code == 200 and "Allow" in page.text and "Deny" in page.text
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        # A post from another site changes nothing.
        refused = await browser.post(
            f"{oauth.base}{consent_url}",
            data={"csrf_token": csrf, "decision": "allow"},
            headers={"Origin": "https://evil.example"},
        )
        assert refused.status_code == 403
        wrong_csrf = await browser.post(
            f"{oauth.base}{consent_url}",
            data={"csrf_token": "x" * 43, "decision": "allow"},
        )
        assert wrong_csrf.status_code == 403
        allowed = await browser.post(
            f"{oauth.base}{consent_url}", data={"csrf_token": csrf, "decision": "allow"}
        )
        assert allowed.status_code == 303
        back = await browser.get(f"{oauth.base}{allowed.headers['location']}")
    assert "code" in redirected(back)
    # Remembered: no consent page for the same scopes, even with prompt=none.
    assert "code" in redirected(await authorize(oauth, {**params, "prompt": "none"}, cookie))
    # A new scope asks again.
    wider = {**params, "scope": "openid email profile"}
    assert urlsplit((await authorize(oauth, wider, cookie)).headers["location"]).path == (
        "/ui/consent"
    )
    events = await (
        await oauth.api.get(
            "/admin/events?type=oauth.consent_granted",
            token=await oauth.api.api_key("events:read"),
        )
    ).json()
    assert events["items"][0]["data"]["client_id"] == client_id


async def test_deny_redirects_access_denied(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential()
    cookie, _ = await oauth.sign_in_browser("deny@example.com")
    params = code_params(client_id, generate_token(48), scope="openid")
    consent_url = (await authorize(oauth, params, cookie)).headers["location"]
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
        page = await browser.get(f"{oauth.base}{consent_url}")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        denied = await browser.post(
            f"{oauth.base}{consent_url}", data={"csrf_token": csrf, "decision": "deny"}
        )
    assert denied.status_code == 303
    query = parse_qs(urlsplit(denied.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["st-1"]


async def test_refresh_rotation_reuse_and_logout_all(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    other_id, other_secret = await oauth.confidential(first_party=True)
    cookie, user_tokens = await oauth.sign_in_browser("refresh@example.com")
    verifier = generate_token(48)
    code = redirected(await authorize(oauth, code_params(client_id, verifier), cookie))["code"]
    auth = basic(client_id, secret)
    _, first, _ = await token_request(
        oauth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        auth,
    )
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    # Bound to its client.
    _, body, _ = await token_request(oauth, refresh, basic(other_id, other_secret))
    assert body["error"] == "invalid_grant"
    # Never accepted by the JSON API's refresh.
    response = await oauth.api.post(
        "/auth/refresh-token", {"refresh_token": first["refresh_token"]}
    )
    assert response.status == 401
    status, second, _ = await token_request(oauth, refresh, auth)
    assert status == 200 and second["refresh_token"] != first["refresh_token"]
    # Within the grace window: the same successor.
    _, again, _ = await token_request(oauth, refresh, auth)
    assert again["refresh_token"] == second["refresh_token"]
    # A narrower scope may be asked; a wider one not.
    _, narrow, _ = await token_request(
        oauth,
        {
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "scope": "openid",
        },
        auth,
    )
    assert narrow["scope"] == "openid"
    _, wide, _ = await token_request(
        oauth,
        {
            "grant_type": "refresh_token",
            "refresh_token": narrow["refresh_token"],
            "scope": "openid payments:read",
        },
        auth,
    )
    assert wide["error"] == "invalid_scope"
    # logout-all ends the client's session too: its tokens are dead.
    response = await oauth.api.post("/auth/logout-all", token=user_tokens["access_token"])
    assert response.status == 200
    _, dead, _ = await token_request(
        oauth, {"grant_type": "refresh_token", "refresh_token": narrow["refresh_token"]}, auth
    )
    assert dead["error"] == "invalid_grant"
    async with httpx.AsyncClient() as rp:
        info = await rp.get(
            f"{oauth.base}/oauth2/userinfo",
            headers={"Authorization": f"Bearer {narrow['access_token']}"},
        )
    assert info.status_code == 401
    assert info.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_refresh_token_reuse_after_grace_ends_the_session(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    cookie, _ = await oauth.sign_in_browser("reuse@example.com")
    verifier = generate_token(48)
    code = redirected(await authorize(oauth, code_params(client_id, verifier), cookie))["code"]
    auth = basic(client_id, secret)
    _, first, _ = await token_request(
        oauth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        auth,
    )
    _, second, _ = await token_request(
        oauth, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth
    )
    # Move the rotation out of the grace window.
    async with oauth.api.container.uow() as uow:
        from sqlalchemy import update

        from identity.adapters.sqlalchemy import tables as t

        connection = uow._connection
        await connection.execute(
            update(t.sessions).values(rotated_at=datetime.now(UTC) - timedelta(minutes=5))
        )
        await uow.commit()
    _, reused, _ = await token_request(
        oauth, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth
    )
    assert reused["error"] == "invalid_grant"
    _, after, _ = await token_request(
        oauth, {"grant_type": "refresh_token", "refresh_token": second["refresh_token"]}, auth
    )
    assert after["error"] == "invalid_grant"


async def test_userinfo_needs_openid_and_tokens_without_offline_access_get_no_refresh(
    oauth: OAuthApi,
) -> None:
    client_id, secret = await oauth.confidential(first_party=False)
    cookie, _ = await oauth.sign_in_browser("noopenid@example.com")
    async with oauth.api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        sign_in = oauth.browsers.signed[cookie][1]
        from identity.domain.oauth import Consent

        await uow.consents.put(
            Consent(tenant.id, sign_in.user_id, client_id, ("email", "openid"), datetime.now(UTC))
        )
        await uow.commit()
    verifier = generate_token(48)
    code = redirected(
        await authorize(oauth, code_params(client_id, verifier, scope="email"), cookie)
    )["code"]
    _, answer, _ = await token_request(
        oauth,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        basic(client_id, secret),
    )
    assert "refresh_token" not in answer and "id_token" not in answer
    async with httpx.AsyncClient() as rp:
        info = await rp.get(
            f"{oauth.base}/oauth2/userinfo",
            headers={"Authorization": f"Bearer {answer['access_token']}"},
        )
    assert info.status_code == 403 and info.json()["error"] == "insufficient_scope"


async def exchange(
    oauth: OAuthApi, client_id: str, secret: str | None, cookie: str, **extra: str
) -> dict[str, Any]:
    verifier = generate_token(48)
    params = code_params(client_id, verifier, **extra)
    code = redirected(await authorize(oauth, params, cookie))["code"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": params["redirect_uri"],
        "code_verifier": verifier,
    }
    if secret is None:
        status, body, _ = await token_request(oauth, {**data, "client_id": client_id})
    else:
        status, body, _ = await token_request(oauth, data, basic(client_id, secret))
    assert status == 200, body
    return body


async def test_a_public_native_client_uses_pkce_and_any_loopback_port(oauth: OAuthApi) -> None:
    client_id = await oauth.public(first_party=True)
    cookie, _ = await oauth.sign_in_browser("native@example.com")
    tokens = await exchange(
        oauth, client_id, None, cookie, redirect_uri="http://127.0.0.1:49152/callback"
    )
    assert tokens["refresh_token"] and tokens["id_token"]
    # Another path, or a non-loopback host, is not the registered URI: an error page.
    for uri in ("http://127.0.0.1:49152/other", "http://localhost.evil.example:80/callback"):
        params = code_params(client_id, generate_token(48), redirect_uri=uri)
        assert (await authorize(oauth, params, cookie)).status_code == 400
    # A public client proves nothing but PKCE: a secret-less refresh still works.
    status, body, _ = await token_request(
        oauth,
        {
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert status == 200, body


async def test_grants_are_listed_and_revoked_by_their_user(oauth: OAuthApi) -> None:
    client_id, secret = await oauth.confidential(first_party=False, name="Third Party")
    cookie, user_tokens = await oauth.sign_in_browser("grants@example.com")
    tenant_id, sign_in = oauth.browsers.signed[cookie]
    tenant = await oauth.api.container.resolve_tenant()("default")
    client = await oauth.api.container.client_admin().get(tenant_id, client_id)
    scopes = ("openid", "email", "profile", "offline_access")
    await oauth.api.container.grant_consent()(tenant, sign_in, client, scopes)
    tokens = await exchange(oauth, client_id, secret, cookie)
    listed = await (await oauth.api.get("/auth/grants", token=user_tokens["access_token"])).json()
    assert [(g["client_id"], g["client_name"]) for g in listed["items"]] == [
        (client_id, "Third Party")
    ]
    assert set(listed["items"][0]["scopes"]) == set(scopes)
    response = await oauth.api.delete(
        f"/auth/grants/{client_id}", token=user_tokens["access_token"]
    )
    assert response.status == 204
    _, body, _ = await token_request(
        oauth,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        basic(client_id, secret),
    )
    assert body["error"] == "invalid_grant"
    listed = await (await oauth.api.get("/auth/grants", token=user_tokens["access_token"])).json()
    assert listed["items"] == []
    response = await oauth.api.delete(
        f"/auth/grants/{client_id}", token=user_tokens["access_token"]
    )
    assert response.status == 404
    events = await (
        await oauth.api.get(
            "/admin/events?type=oauth.consent_revoked",
            token=await oauth.api.api_key("events:read"),
        )
    ).json()
    assert events["items"][0]["data"]["client_id"] == client_id


async def test_rp_initiated_logout_ends_the_browser_and_its_client_sessions(
    oauth: OAuthApi,
) -> None:
    back = "https://rp.example/signed-out"
    client_id, secret = await oauth.confidential(
        first_party=True, post_logout_redirect_uris=(back,)
    )
    cookie, _ = await oauth.sign_in_browser("logout@example.com")
    tokens = await exchange(oauth, client_id, secret, cookie)
    async with httpx.AsyncClient(cookies={BROWSER_COOKIE: cookie}) as browser:
        # An unregistered post-logout URI: an error page, nothing ends.
        refused = await browser.get(
            f"{oauth.base}/oauth2/logout",
            params={
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": "https://evil.example/",
            },
        )
        assert refused.status_code == 400 and "location" not in refused.headers
        done = await browser.get(
            f"{oauth.base}/oauth2/logout",
            params={
                "id_token_hint": tokens["id_token"],
                "post_logout_redirect_uri": back,
                "state": "bye",
            },
        )
    assert done.status_code == 302
    assert done.headers["location"] == f"{back}?state=bye"
    # The browser session is over (prompt=none: login_required), and so is the client's.
    got = redirected(
        await authorize(oauth, code_params(client_id, generate_token(48), prompt="none"), cookie)
    )
    assert got["error"] == "login_required"
    _, body, _ = await token_request(
        oauth,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        basic(client_id, secret),
    )
    assert body["error"] == "invalid_grant"


# --- dynamic registration (RFC 7591) -------------------------------------------------


async def test_registration_is_off_by_default(oauth: OAuthApi) -> None:
    response = await oauth.api.post("/oauth2/register", {"redirect_uris": [RP]})
    assert response.status == 404
    document = await (await oauth.api.get("/.well-known/openid-configuration")).json()
    assert "registration_endpoint" not in document


async def test_open_registration_makes_third_party_clients_that_work(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    oauth = await start_oauth_api(
        smtp, migrated_postgres_url, aiohttp_client, OAUTH_REGISTRATION="open"
    )
    document = await (await oauth.api.get("/.well-known/openid-configuration")).json()
    assert document["registration_endpoint"] == f"{oauth.base}/oauth2/register"
    response = await oauth.api.post(
        "/oauth2/register",
        {"client_name": "Agent", "redirect_uris": [RP], "scope": "openid email"},
    )
    assert response.status == 201, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    registered = await response.json()
    assert registered["client_secret"] and registered["client_secret_expires_at"] == 0
    async with oauth.api.container.uow() as uow:
        client = await uow.oauth_clients.get(registered["client_id"])
    assert client is not None and not client.first_party and client.dynamically_registered
    # Third party: consent is asked.
    cookie, _ = await oauth.sign_in_browser("agent-user@example.com")
    params = code_params(registered["client_id"], generate_token(48), scope="openid email")
    location = (await authorize(oauth, params, cookie)).headers["location"]
    assert urlsplit(location).path == "/ui/consent"
    # Bad metadata: RFC 7591 errors.
    for body, error in (
        ({"redirect_uris": ["http://rp.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["com.example.app:/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": [RP], "scope": "openid admin:all"}, "invalid_client_metadata"),
        ({"redirect_uris": [RP], "response_types": ["token"]}, "invalid_client_metadata"),
        ({"redirect_uris": "not a list"}, "invalid_client_metadata"),
        ({"redirect_uris": [RP], "token_endpoint_auth_method": "magic"}, "invalid_client_metadata"),
    ):
        response = await oauth.api.post("/oauth2/register", body)
        assert response.status == 400, body
        assert (await response.json())["error"] == error, body
    response = await oauth.api.client.post(
        "/oauth2/register", data="{", headers={"Content-Type": "application/json"}
    )
    assert (await response.json())["error"] == "invalid_client_metadata"


async def test_token_registration_needs_an_api_key_with_clients_manage(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    oauth = await start_oauth_api(
        smtp, migrated_postgres_url, aiohttp_client, OAUTH_REGISTRATION="token"
    )
    body = {
        "client_name": "CLI",
        "redirect_uris": ["http://127.0.0.1/cb"],
        "token_endpoint_auth_method": "none",
    }
    response = await oauth.api.post("/oauth2/register", body)
    assert response.status == 401 and (await response.json())["error"] == "invalid_token"
    reader = await oauth.api.api_key("users:read")
    response = await oauth.api.post("/oauth2/register", body, token=reader)
    assert response.status == 401
    manager = await oauth.api.api_key("clients:manage")
    response = await oauth.api.post("/oauth2/register", body, token=manager)
    assert response.status == 201, await response.text()
    registered = await response.json()
    assert "client_secret" not in registered
    assert registered["token_endpoint_auth_method"] == "none"


# --- back-channel logout -------------------------------------------------------------


class LogoutReceiver:
    """A relying party's back-channel logout endpoint, served on 127.0.0.1."""

    def __init__(self) -> None:
        self.tokens: asyncio.Queue[str] = asyncio.Queue()
        self.app = web.Application()
        self.app.router.add_post("/backchannel", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert request.content_type == "application/x-www-form-urlencoded"
        await self.tokens.put(str(form["logout_token"]))
        return web.Response(status=200)


async def test_every_ended_client_session_gets_a_back_channel_logout_token(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    aiohttp_server: Callable[..., Awaitable[Any]],
) -> None:
    oauth = await start_oauth_api(
        smtp, migrated_postgres_url, aiohttp_client, WEBHOOK_ALLOW_PRIVATE="true"
    )
    receiver = LogoutReceiver()
    server = await aiohttp_server(receiver.app)
    uri = f"http://127.0.0.1:{server.port}/backchannel"
    client_id, secret = await oauth.confidential(first_party=True, backchannel_logout_uri=uri)
    cookie, user_tokens = await oauth.sign_in_browser("bcl@example.com")
    first = await exchange(oauth, client_id, secret, cookie)
    second = await exchange(oauth, client_id, secret, cookie)
    sids = {
        jwt.decode(tokens["id_token"], options={"verify_signature": False})["sid"]
        for tokens in (first, second)
    }
    # logout-all ends both client sessions (and the browser's): two logout tokens.
    response = await oauth.api.post("/auth/logout-all", token=user_tokens["access_token"])
    assert response.status == 200
    key_set = jwt.PyJWKSet.from_dict(await jwks(oauth))
    received = set()
    for _ in range(2):
        token = await asyncio.wait_for(receiver.tokens.get(), timeout=15)
        header = jwt.get_unverified_header(token)
        assert header["typ"] == "logout+jwt" and header["alg"] == "RS256"
        claims = jwt.decode(
            token,
            key_set[header["kid"]].key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=oauth.api.settings.issuer,
        )
        assert claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
        assert "nonce" not in claims and claims["jti"] and claims["iat"]
        received.add(claims["sid"])
    assert received == sids
    # Told once: nothing more is queued for them.
    assert await oauth.api.container.deliver_backchannel_logouts()() == 0
    assert receiver.tokens.empty()


async def test_with_mfa_on_the_second_factor_comes_before_the_code(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential(first_party=True)
    cookie, _ = await oauth.sign_in_browser("mfa-rp@example.com")
    tenant_id, sign_in = oauth.browsers.signed[cookie]
    async with oauth.api.container.uow() as uow:
        account = await uow.accounts.get(tenant_id, sign_in.user_id)
        assert account is not None
        account.mfa_enabled = True
        await uow.accounts.update(account)
        await uow.commit()
    params = code_params(client_id, generate_token(48))
    response = await authorize(oauth, params, cookie)
    assert urlsplit(response.headers["location"]).path == "/ui/mfa"
    got = redirected(await authorize(oauth, {**params, "prompt": "none"}, cookie))
    assert got["error"] == "interaction_required"
    # After the second factor (the browser session at aal2), the code is issued.
    oauth.browsers.signed[cookie] = (tenant_id, attrs.evolve(sign_in, aal="aal2"))
    assert "code" in redirected(await authorize(oauth, params, cookie))
