"""Sign-in with Google end to end: the real app, a real database, an OIDC provider on 127.0.0.1.

The test drives the flow as a browser does: GET /auth/google/login, follow the
Location to the provider's /authorize, come back to the callback with the
cookie the login set. Cookies are handled by hand (the client keeps none), so
each test says exactly which browser sends what.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from dependency_injector import providers
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.clock import ManualClock
from identity.adapters.sqlalchemy import tables
from identity.application.pkce import new_code_verifier, s256_challenge
from identity.application.tenancy import TenantAdmin
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.events import EventType, SecurityEvent
from identity.entrypoints.container import Container
from identity.entrypoints.http.app import build_container, create_app
from identity.entrypoints.http.handlers.google import CALLBACK_PATH, COOKIE
from identity.entrypoints.settings import load_settings
from tests.fakes import manual_clock
from tests.oidc_provider import FakeOidcProvider

ISSUER = "http://127.0.0.1:8000"
ALLOWED = "https://app.example.com/welcome"
PASSWORD = "a long and unusual passphrase 42"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def provider() -> AsyncIterator[FakeOidcProvider]:
    async with FakeOidcProvider() as provider:
        yield provider


def environment(database_url: str, provider: FakeOidcProvider, **extra: str) -> dict[str, str]:
    env = {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "IDENTITY_BCRYPT_ROUNDS": "4",
        "IDENTITY_ISSUER": ISSUER,
        "IDENTITY_GOOGLE_CLIENT_ID": provider.client.client_id,
        "IDENTITY_GOOGLE_CLIENT_SECRET": provider.client.client_secret,
        "IDENTITY_GOOGLE_DISCOVERY_URL": provider.discovery_url,
        "IDENTITY_OAUTH_REDIRECT_ALLOWLIST": ALLOWED,
        "IDENTITY_LOG_FORMAT": "text",
    }
    env.update(extra)
    return {key: value for key, value in env.items() if value}


class App:
    """The running app, its container and the browser-like helpers."""

    def __init__(
        self,
        client: TestClient[Any, Any],
        container: Container,
        provider: FakeOidcProvider,
        database_url: str,
    ) -> None:
        self.client = client
        self.container = container
        self.provider = provider
        self.database_url = database_url

    async def login(
        self, *, redirect_to: str | None = None, tenant: str | None = None
    ) -> aiohttp.ClientResponse:
        query = f"?{urlencode({'redirect_to': redirect_to})}" if redirect_to is not None else ""
        headers = {"X-Tenant": tenant} if tenant else {}
        return await self.client.get(
            f"/auth/google/login{query}", headers=headers, allow_redirects=False
        )

    async def start(self, **kwargs: Any) -> tuple[str, str]:
        """GET /auth/google/login: the authorization URL and the cookie's value."""
        response = await self.login(**kwargs)
        assert response.status == 302, await response.text()
        return response.headers["Location"], response.cookies[COOKIE].value

    async def authorize(self, authorization_url: str) -> str:
        """The browser at the provider: returns the callback path and query on our app."""
        location = urlsplit(await self.provider.browser_authorize(authorization_url))
        assert f"{location.scheme}://{location.netloc}{location.path}" == (ISSUER + CALLBACK_PATH)
        return f"{location.path}?{location.query}"

    async def callback(self, path: str, cookie: str | None) -> aiohttp.ClientResponse:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
        return await self.client.get(path, headers=headers, allow_redirects=False)

    async def sign_in(self, **kwargs: Any) -> aiohttp.ClientResponse:
        url, cookie = await self.start(**kwargs)
        return await self.callback(await self.authorize(url), cookie)

    async def count(self, table: Any) -> int:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).select_from(table)
                return int((await connection.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    async def me(self, access_token: str) -> dict[str, Any]:
        response = await self.client.get(
            "/auth/me", headers={"Authorization": f"Bearer {access_token}"}
        )
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def add_password_account(self, email: str, *, verified: bool = True) -> Account:
        container = self.container
        password_hash = await container.hasher().hash(PASSWORD)
        now = container.clock().now()
        async with container.uow() as uow:
            tenant = await uow.tenants.get_by_slug("default")
            assert tenant is not None
            account = Account(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email=Email(email),
                created_at=now,
                updated_at=now,
                password_hash=password_hash,
                is_verified=verified,
                verified_at=now if verified else None,
            )
            await uow.accounts.add(account)
            await uow.commit()
        return account


async def make_app(
    aiohttp_client: AiohttpClient,
    database_url: str,
    provider: FakeOidcProvider,
    *,
    clock: ManualClock | None = None,
    **env: str,
) -> App:
    settings = load_settings(environment(database_url, provider, **env))
    container = build_container(settings)
    if clock is not None:
        container.clock.override(providers.Object(clock))
    app: web.Application = create_app(settings, container)
    # No cookie jar: each request carries exactly the cookies the test gives it.
    client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
    return App(client, container, provider, database_url)


@pytest.fixture
async def app(aiohttp_client: AiohttpClient, database_url: str, provider: FakeOidcProvider) -> App:
    return await make_app(aiohttp_client, database_url, provider)


async def assert_refused(app: App, response: aiohttp.ClientResponse, *, status: int = 400) -> None:
    body = await response.json()
    assert response.status == status, body
    assert response.content_type == "application/problem+json"
    assert "access_token" not in body and "refresh_token" not in body
    assert await app.count(tables.sessions) == 0


def fragment_of(location: str) -> dict[str, str]:
    values = parse_qs(urlsplit(location).fragment, strict_parsing=True)
    return {key: value for key, [value] in values.items()}


# --- the happy paths ---------------------------------------------------------


async def test_a_new_person_gets_a_verified_account_without_password(app: App) -> None:
    app.provider.next_identity(sub="g-1", email="Ann@Example.COM", name="Ann")

    url, cookie = await app.start()
    response = await app.callback(await app.authorize(url), cookie)

    body = await response.json()
    assert response.status == 200, body
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0 and body["refresh_token_expires_in"] > 0
    user = body["user"]
    assert user["email"] == "Ann@example.com"
    assert user["full_name"] == "Ann"
    assert user["is_verified"] is True
    assert user["has_password"] is False
    assert user["google_linked"] is True
    assert user["tenant"] == "default"
    assert (await app.me(body["access_token"]))["google_linked"] is True
    assert await app.count(tables.external_identities) == 1
    # The callback spends the cookie.
    cleared = response.cookies[COOKIE]
    assert cleared.value == "" and cleared["path"] == CALLBACK_PATH
    assert cleared["max-age"] == "0"


async def test_login_sends_state_nonce_and_pkce_and_sets_a_bound_cookie(app: App) -> None:
    response = await app.login()

    assert response.status == 302
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == CALLBACK_PATH
    assert cookie["max-age"] == "600"
    assert not cookie["secure"]  # the redirect URI is plain http in this test
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == [ISSUER + CALLBACK_PATH]
    assert query["client_id"] == [app.provider.client.client_id]
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"][0] and query["nonce"][0] and query["code_challenge"][0]
    assert query["state"][0] != cookie.value

    path = await app.authorize(response.headers["Location"])
    finished = await app.callback(path, cookie.value)
    assert finished.status == 200
    [token_request] = app.provider.token_requests
    assert s256_challenge(token_request["code_verifier"]) == query["code_challenge"][0]


async def test_the_database_keeps_neither_the_cookie_nor_the_verifier(app: App) -> None:
    url, cookie = await app.start()
    challenge = parse_qs(urlsplit(url).query)["code_challenge"][0]

    engine = create_async_engine(app.database_url)
    try:
        async with engine.connect() as connection:
            [row] = (await connection.execute(select(tables.oauth_states))).all()
    finally:
        await engine.dispose()
    assert row.id == hashlib.sha256(cookie.encode()).hexdigest()
    assert cookie not in repr(tuple(row))
    # Sealed: the stored bytes are not a verifier matching the challenge.
    assert s256_challenge(bytes(row.code_verifier).decode("ascii", "replace")) != challenge
    assert (row.expires_at - row.created_at).total_seconds() == 600


async def test_a_returning_person_gets_the_same_account_even_with_a_new_email(app: App) -> None:
    app.provider.next_identity(sub="g-2", email="bob@example.com")
    first = await (await app.sign_in()).json()

    app.provider.next_identity(sub="g-2", email="robert@example.org")
    second_response = await app.sign_in()
    second = await second_response.json()

    assert second_response.status == 200, second
    assert second["user"]["id"] == first["user"]["id"]
    assert second["user"]["email"] == "bob@example.com"
    assert await app.count(tables.users) == 1


async def test_a_verified_email_is_linked_to_the_existing_password_account(app: App) -> None:
    account = await app.add_password_account("carol@example.com")
    app.provider.next_identity(sub="g-3", email="carol@example.com", email_verified=True)

    response = await app.sign_in()

    body = await response.json()
    assert response.status == 200, body
    assert body["user"]["id"] == str(account.id)
    assert body["user"]["has_password"] is True
    assert body["user"]["google_linked"] is True
    password_login = await app.client.post(
        "/auth/login", json={"email": "carol@example.com", "password": PASSWORD}
    )
    assert password_login.status == 200
    assert (await password_login.json())["user"]["google_linked"] is True


async def test_linking_an_unverified_password_account_drops_its_password(app: App) -> None:
    # Someone may have registered the address first with a password of their own.
    account = await app.add_password_account("dave@example.com", verified=False)
    app.provider.next_identity(sub="g-4", email="dave@example.com", email_verified=True)

    body = await (await app.sign_in()).json()

    assert body["user"]["id"] == str(account.id)
    assert body["user"]["is_verified"] is True
    assert body["user"]["has_password"] is False


async def test_an_allowed_redirect_receives_the_tokens_in_the_fragment(app: App) -> None:
    target = f"{ALLOWED}/done?tab=1"

    response = await app.sign_in(redirect_to=target)

    assert response.status == 302
    location = response.headers["Location"]
    assert location.startswith(target + "#")
    tokens = fragment_of(location)
    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
    }
    assert tokens["token_type"] == "bearer"
    assert int(tokens["expires_in"]) > 0
    assert (await app.me(tokens["access_token"]))["google_linked"] is True
    assert response.cookies[COOKIE]["max-age"] == "0"


# --- refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "misbehaviour",
    [
        {"nonce": "not-the-nonce-we-sent"},
        {"aud": "someone-elses-client"},
        {"iss": "https://evil.example.com"},
        {"expired": True},
        {"unknown_key": True},
        {"alg": "none"},
        {"alg": "HS256"},
        {"authorize_error": "access_denied"},
        {"token_status": 400},
    ],
    ids=lambda value: "-".join(f"{k}={v}" for k, v in value.items()),
)
async def test_a_bad_answer_from_the_provider_issues_no_token(
    app: App, misbehaviour: dict[str, Any]
) -> None:
    app.provider.misbehave(**misbehaviour)

    response = await app.sign_in()

    await assert_refused(app, response)
    assert (await response.json())["code"] == "oauth_failed"
    assert await app.count(tables.users) == 0


async def test_a_failing_provider_is_a_503_and_issues_no_token(app: App) -> None:
    app.provider.misbehave(token_status=500)

    response = await app.sign_in()

    await assert_refused(app, response, status=503)
    assert (await response.json())["code"] == "provider_unavailable"
    assert await app.count(tables.users) == 0


async def test_a_tampered_state_is_refused_before_the_code_is_redeemed(app: App) -> None:
    url, cookie = await app.start()
    path = await app.authorize(url)
    parts = urlsplit(path)
    query = {key: value for key, [value] in parse_qs(parts.query).items()}
    query["state"] = query["state"][:-2] + ("AA" if not query["state"].endswith("AA") else "BB")

    response = await app.callback(urlunsplit(parts._replace(query=urlencode(query))), cookie)

    await assert_refused(app, response)
    assert app.provider.token_requests == []


async def test_a_state_from_another_browser_is_refused(app: App) -> None:
    victim_url, _victim_cookie = await app.start()
    _attacker_url, attacker_cookie = await app.start()
    victim_callback = await app.authorize(victim_url)

    with_other_cookie = await app.callback(victim_callback, attacker_cookie)
    without_cookie = await app.callback(victim_callback, None)
    with_forged_cookie = await app.callback(victim_callback, "x" * 43)

    for response in (with_other_cookie, without_cookie, with_forged_cookie):
        await assert_refused(app, response)
    assert app.provider.token_requests == []


async def test_a_replayed_callback_is_refused(app: App) -> None:
    url, cookie = await app.start()
    path = await app.authorize(url)
    assert (await app.callback(path, cookie)).status == 200

    replay = await app.callback(path, cookie)

    body = await replay.json()
    assert replay.status == 400 and body["code"] == "oauth_failed"
    assert "access_token" not in body
    assert len(app.provider.token_requests) == 1  # refused before reaching the provider
    assert await app.count(tables.sessions) == 1


async def test_concurrent_callbacks_with_one_state_sign_in_once(app: App) -> None:
    url, cookie = await app.start()
    path = await app.authorize(url)

    responses = await asyncio.gather(*(app.callback(path, cookie) for _ in range(5)))

    assert sorted(response.status for response in responses) == [200, 400, 400, 400, 400]
    assert await app.count(tables.sessions) == 1
    assert len(app.provider.token_requests) == 1  # the state was spent once, atomically


async def test_the_code_is_useless_without_the_verifier_of_this_flow(app: App) -> None:
    url, cookie = await app.start()
    # The browser's request reaches the provider with another PKCE challenge:
    # the verifier this server kept no longer matches, and the provider says no.
    parts = urlsplit(url)
    query = {key: value for key, [value] in parse_qs(parts.query).items()}
    query["code_challenge"] = s256_challenge(new_code_verifier())
    path = await app.authorize(urlunsplit(parts._replace(query=urlencode(query))))

    response = await app.callback(path, cookie)

    await assert_refused(app, response)
    [token_request] = app.provider.token_requests
    assert token_request["code_verifier"]


async def test_an_unverified_email_never_opens_the_existing_account(app: App) -> None:
    await app.add_password_account("erin@example.com")
    app.provider.next_identity(sub="g-5", email="erin@example.com", email_verified=False)

    response = await app.sign_in()

    await assert_refused(app, response)
    assert await app.count(tables.external_identities) == 0
    password_login = await app.client.post(
        "/auth/login", json={"email": "erin@example.com", "password": PASSWORD}
    )
    assert (await password_login.json())["user"]["google_linked"] is False


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/welcome",
        "https://app.example.com.evil.example.com/welcome",
        "https://app.example.com/welcomes",
        "https://app.example.com/welcome/../admin",
        "//evil.example.com/welcome",
        "javascript:alert(1)",
        "https://app.example.com/welcome#frag",
        "",
    ],
)
async def test_a_redirect_outside_the_allowlist_is_refused(app: App, target: str) -> None:
    response = await app.login(redirect_to=target)

    body = await response.json()
    assert response.status == 400, body
    assert body["code"] == "oauth_failed"
    assert COOKIE not in response.cookies
    assert "Location" not in response.headers
    assert app.provider.authorize_requests == []
    assert await app.count(tables.oauth_states) == 0


async def test_a_flow_older_than_ten_minutes_is_refused(
    aiohttp_client: AiohttpClient, database_url: str, provider: FakeOidcProvider
) -> None:
    clock = manual_clock()
    app = await make_app(aiohttp_client, database_url, provider, clock=clock)
    url, cookie = await app.start()
    path = await app.authorize(url)

    clock.advance(seconds=601)
    response = await app.callback(path, cookie)

    await assert_refused(app, response)
    assert provider.token_requests == []


async def test_a_disabled_account_is_refused(app: App) -> None:
    app.provider.next_identity(sub="g-6", email="frank@example.com")
    assert (await app.sign_in()).status == 200
    await app.container.user_admin().set_active("default", Email("frank@example.com"), False)

    response = await app.sign_in()

    body = await response.json()
    assert response.status == 403 and body["code"] == "account_disabled"
    assert "access_token" not in body


# --- configuration ---------------------------------------------------------------


async def test_without_a_client_id_both_endpoints_answer_404(
    aiohttp_client: AiohttpClient, database_url: str, provider: FakeOidcProvider
) -> None:
    app = await make_app(aiohttp_client, database_url, provider, IDENTITY_GOOGLE_CLIENT_ID="")

    login = await app.login()
    callback = await app.callback(f"{CALLBACK_PATH}?code=abc&state=def", "cookie")

    for response in (login, callback):
        body = await response.json()
        assert response.status == 404, body
        assert body["code"] == "provider_not_configured"
    assert provider.authorize_requests == []


async def test_a_tenant_uses_its_own_google_client(
    aiohttp_client: AiohttpClient, database_url: str, provider: FakeOidcProvider
) -> None:
    app = await make_app(
        aiohttp_client, database_url, provider, IDENTITY_GOOGLE_CLIENT_ID="deployment-client"
    )
    admin: TenantAdmin = app.container.tenant_admin()
    await admin.create("acme")
    await admin.set("acme", "google_client_id", provider.client.client_id)

    default_url, _ = await app.start()
    acme_url, acme_cookie = await app.start(tenant="acme")

    assert parse_qs(urlsplit(default_url).query)["client_id"] == ["deployment-client"]
    assert parse_qs(urlsplit(acme_url).query)["client_id"] == [provider.client.client_id]
    # The provider sends the browser back without any X-Tenant header: the flow
    # finishes in the tenant that started it.
    response = await app.callback(await app.authorize(acme_url), acme_cookie)
    body = await response.json()
    assert response.status == 200, body
    assert body["user"]["tenant"] == "acme"


# --- security events ---------------------------------------------------------


async def recorded(app: App) -> list[SecurityEvent]:
    """The default tenant's events, oldest first."""
    async with app.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        found = await uow.events.list(tenant.id, limit=50)
    return list(reversed(found))


async def test_a_first_sign_in_records_creation_link_and_login(app: App) -> None:
    app.provider.next_identity(sub="g-ev-1", email="eve@example.com")
    body = await (await app.sign_in()).json()

    # Events of one moment have no order among themselves: found by type.
    by_type = {event.type: event for event in await recorded(app)}
    assert set(by_type) == {
        EventType.USER_CREATED,
        EventType.IDENTITY_LINKED,
        EventType.LOGIN_SUCCEEDED,
    }
    assert {str(e.user_id) for e in by_type.values()} == {body["user"]["id"]}
    assert by_type[EventType.IDENTITY_LINKED].data == {"provider": "google"}
    login = by_type[EventType.LOGIN_SUCCEEDED]
    assert login.data == {"method": "google", "aal": "aal1"}
    assert login.session_id is not None


async def test_linking_an_unverified_account_records_its_verification(app: App) -> None:
    await app.add_password_account("fay@example.com", verified=False)
    app.provider.next_identity(sub="g-ev-2", email="fay@example.com", email_verified=True)
    await app.sign_in()

    assert sorted(e.type.value for e in await recorded(app)) == [
        "identity.linked",
        "login.succeeded",
        "user.verified",
    ]
