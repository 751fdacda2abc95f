"""``identity.testing.IdentityTestServer``: one contract, every storage.

The same checks run on the in-memory server and on Postgres (SQLite in
``test_identity_testing_lifecycle.py``): what a
downstream suite relies on (real HTTP, captured mail, a clock that moves
expiry of codes, tokens, grace windows and rate-limit windows) must not
depend on where the data lives. The storage contract itself is
``test_repository_contract.py``, which runs the same repositories.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import jwt
import pytest

from identity.testing import IdentityTestServer
from tests.databases import PostgresDatabases

PASSWORD = "correct horse 42"


@pytest.fixture(scope="module")
def shared_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    """One database for the module, as a downstream suite would share one: the
    server keeps its data, so every test uses addresses of its own."""
    url = postgres_databases.create_migrated()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(params=["memory", "postgres"])
def storage(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "postgres":
        return {
            "storage": "postgres",
            "database_url": request.getfixturevalue("shared_postgres_url"),
        }
    return {"storage": request.param}


@pytest.fixture
def ada() -> str:
    return f"ada-{secrets.token_hex(4)}@example.com"


@pytest.fixture
def bo() -> str:
    return f"bo-{secrets.token_hex(4)}@example.com"


@pytest.fixture
async def server(storage: dict[str, Any]) -> AsyncIterator[IdentityTestServer]:
    settings = {"RATE_LIMIT_LOGIN": "3/minute", "REFRESH_REUSE_GRACE": "10s"}
    async with IdentityTestServer(**storage, settings=settings) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    token: str | None = None,
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None)


async def test_a_created_user_signs_in_and_its_token_verifies_against_the_jwks(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    user = await server.create_user(ada.capitalize(), password=PASSWORD)
    tokens = await server.login(ada, PASSWORD)

    status, me = await call(http, "GET", f"{server.url}/auth/me", token=tokens["access_token"])
    assert status == 200, me
    assert (me["id"], me["email"], me["is_verified"]) == (str(user.id), ada.capitalize(), True)
    assert tokens["user"]["id"] == str(user.id)

    _, jwks = await call(http, "GET", server.jwks_url)
    key = jwt.PyJWKSet.from_dict(jwks).keys[0]
    claims = jwt.decode(
        tokens["access_token"],
        key.key,
        algorithms=["EdDSA"],
        audience=server.audience,
        issuer=server.issuer,
    )
    assert claims["sub"] == str(user.id)
    assert server.issuer == server.url
    _, discovery = await call(http, "GET", f"{server.url}/.well-known/openid-configuration")
    assert discovery["jwks_uri"] == server.jwks_url


async def test_mail_is_captured_before_the_answer_and_unverified_users_wait_for_their_code(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    status, _ = await call(
        http,
        "POST",
        f"{server.url}/auth/register",
        {"email": bo, "password": PASSWORD},
    )
    assert status == 202
    code = server.mail.last_code(bo, "verification")
    assert code is not None and len(code) == 6
    assert server.mail.last_code(bo, "login") is None
    [message] = server.mail.messages(bo.upper())
    assert message.purpose == "verification" and code in message.text

    status, tokens = await call(
        http,
        "POST",
        f"{server.url}/auth/verify-otp",
        {"email": bo, "otp_code": code, "purpose": "verification"},
    )
    assert status == 200, tokens
    assert tokens["user"]["is_verified"] is True

    cy = bo.replace("bo-", "cy-")
    pending = await server.create_user(cy, verified=False)
    assert pending.password is None and not pending.verified
    status, problem = await call(
        http, "POST", f"{server.url}/auth/login", {"email": cy, "password": PASSWORD}
    )
    assert (status, problem["code"]) == (401, "invalid_credentials")
    assert server.mail.last_code(cy, "verification") is not None


async def test_moving_the_clock_expires_access_tokens_and_codes(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    await server.create_user(ada, password=PASSWORD)
    tokens = await server.login(ada, PASSWORD)
    status, _ = await call(
        http,
        "POST",
        f"{server.url}/auth/request-otp",
        {"email": ada, "purpose": "login"},
    )
    assert status == 202
    code = server.mail.last_code(ada, "login")
    assert code is not None
    me = f"{server.url}/auth/me"
    assert (await call(http, "GET", me, token=tokens["access_token"]))[0] == 200

    server.clock.advance(minutes=16)  # past the 15 min access TTL and the 30 s skew

    status, problem = await call(http, "GET", me, token=tokens["access_token"])
    assert (status, problem["code"]) == (401, "invalid_token")
    status, problem = await call(
        http,
        "POST",
        f"{server.url}/auth/verify-otp",
        {"email": ada, "otp_code": code, "purpose": "login"},
    )
    assert (status, problem["code"]) == (400, "otp_invalid")  # codes live 10 min
    status, renewed = await call(
        http, "POST", f"{server.url}/auth/refresh-token", {"refresh_token": tokens["refresh_token"]}
    )
    assert status == 200, renewed
    assert (await call(http, "GET", me, token=renewed["access_token"]))[0] == 200


async def test_moving_the_clock_closes_the_refresh_grace_window(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    await server.create_user(ada, password=PASSWORD)
    tokens = await server.login(ada, PASSWORD)
    refresh = f"{server.url}/auth/refresh-token"
    first = await call(http, "POST", refresh, {"refresh_token": tokens["refresh_token"]})
    server.clock.advance(seconds=5)
    again = await call(http, "POST", refresh, {"refresh_token": tokens["refresh_token"]})
    assert first[0] == again[0] == 200
    assert first[1]["refresh_token"] == again[1]["refresh_token"]  # inside the grace window

    server.clock.advance(seconds=6)

    status, problem = await call(http, "POST", refresh, {"refresh_token": tokens["refresh_token"]})
    assert (status, problem["code"]) == (401, "refresh_token_reused")


async def test_moving_the_clock_opens_a_new_rate_limit_window(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    await server.create_user(ada, password=PASSWORD)
    login = f"{server.url}/auth/login"
    wrong = {"email": ada, "password": "not the password"}
    statuses = [(await call(http, "POST", login, wrong))[0] for _ in range(3)]
    assert statuses == [401, 401, 401]
    status, problem = await call(http, "POST", login, {**wrong, "password": PASSWORD})
    assert (status, problem["code"]) == (429, "rate_limited")

    server.clock.advance(minutes=1)

    status, tokens = await call(http, "POST", login, {**wrong, "password": PASSWORD})
    assert status == 200, tokens


async def test_users_of_another_tenant_are_apart(
    server: IdentityTestServer, http: aiohttp.ClientSession, ada: str, bo: str
) -> None:
    user = await server.create_user(ada, password=PASSWORD, tenant="acme")
    tokens = await server.login(ada, PASSWORD, tenant="acme")
    assert tokens["user"]["tenant"] == "acme" and tokens["user"]["id"] == str(user.id)
    status, problem = await call(
        http, "POST", f"{server.url}/auth/login", {"email": ada, "password": PASSWORD}
    )
    assert (status, problem["code"]) == (401, "invalid_credentials")  # not in "default"
    with pytest.raises(ValueError, match="already registered"):
        await server.create_user(ada, password=PASSWORD, tenant="acme")


async def test_an_api_key_is_a_service_principal_with_its_scopes(
    server: IdentityTestServer, http: aiohttp.ClientSession
) -> None:
    manager = await server.api_key(["api-keys:manage"])
    reader = await server.api_key(["users:read"], tenant="acme")
    status, listed = await call(http, "GET", f"{server.url}/admin/api-keys", token=manager)
    assert status == 200, listed
    assert [key["scopes"] for key in listed["items"]] == [["api-keys:manage"]]
    status, problem = await call(http, "GET", f"{server.url}/admin/api-keys", token=reader)
    assert status == 403, problem
    with pytest.raises(ValueError, match="unknown scope 'users:everything'"):
        await server.api_key(["users:everything"])
