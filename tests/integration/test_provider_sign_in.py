"""Sign-in with a named OIDC provider and with GitHub, and the user's linked identities.

The real app on Postgres, a second instance of the OIDC fake configured as
``corp`` (beside one as Google), and the GitHub fake speaking GitHub's
endpoint shapes. Browsers are driven by hand: each request carries exactly the
cookies the test gives it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.sqlalchemy import tables
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.entrypoints.container import Container
from identity.entrypoints.http.app import build_container, create_app
from identity.entrypoints.http.handlers.providers import COOKIE
from identity.entrypoints.settings import SettingsError, load_settings
from tests.github_provider import FakeGitHub, primary, secondary
from tests.oidc_provider import FakeOidcProvider

ISSUER = "http://127.0.0.1:8000"
ALLOWED = "https://app.example.com/welcome"
PASSWORD = "a long and unusual passphrase 42"
TIMEOUT_SECONDS = 1.0

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def corp() -> AsyncIterator[FakeOidcProvider]:
    async with FakeOidcProvider(client_id="corp-client", client_secret="corp-secret") as corp:
        yield corp


@pytest.fixture
async def google() -> AsyncIterator[FakeOidcProvider]:
    async with FakeOidcProvider() as google:
        yield google


@pytest.fixture
async def github() -> AsyncIterator[FakeGitHub]:
    async with FakeGitHub() as github:
        yield github


def environment(
    database_url: str, corp: FakeOidcProvider, google: FakeOidcProvider, github: FakeGitHub
) -> dict[str, str]:
    return {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "IDENTITY_BCRYPT_ROUNDS": "4",
        "IDENTITY_ISSUER": ISSUER,
        "IDENTITY_LOG_FORMAT": "text",
        "IDENTITY_OAUTH_REDIRECT_ALLOWLIST": ALLOWED,
        "IDENTITY_PROVIDER_TIMEOUT": f"{TIMEOUT_SECONDS}s",
        "IDENTITY_GOOGLE_CLIENT_ID": google.client.client_id,
        "IDENTITY_GOOGLE_CLIENT_SECRET": google.client.client_secret,
        "IDENTITY_GOOGLE_DISCOVERY_URL": google.discovery_url,
        "IDENTITY_OIDC_PROVIDERS": "corp",
        "IDENTITY_OIDC_CORP_CLIENT_ID": corp.client.client_id,
        "IDENTITY_OIDC_CORP_CLIENT_SECRET": corp.client.client_secret,
        "IDENTITY_OIDC_CORP_DISCOVERY_URL": corp.discovery_url,
        "IDENTITY_GITHUB_CLIENT_ID": github.client.client_id,
        "IDENTITY_GITHUB_CLIENT_SECRET": github.client.client_secret,
        "IDENTITY_GITHUB_BASE_URL": github.base_url,
        "IDENTITY_GITHUB_API_URL": github.api_url,
    }


class App:
    def __init__(
        self,
        client: TestClient[Any, Any],
        container: Container,
        fakes: dict[str, FakeOidcProvider | FakeGitHub],
        database_url: str,
    ) -> None:
        self.client = client
        self.container = container
        self.fakes = fakes
        self.database_url = database_url

    @staticmethod
    def base(provider: str) -> str:
        return f"/auth/{provider}" if provider in ("google", "github") else f"/auth/oidc/{provider}"

    async def start(self, provider: str, **query: str) -> tuple[str, str]:
        """GET .../login: the provider URL and the cookie's value."""
        suffix = f"?{urlencode(query)}" if query else ""
        response = await self.client.get(
            f"{self.base(provider)}/login{suffix}", allow_redirects=False
        )
        assert response.status == 302, await response.text()
        cookie = response.cookies[COOKIE]
        assert cookie["path"] == f"{self.base(provider)}/callback"
        return response.headers["Location"], cookie.value

    async def authorize(self, provider: str, url: str) -> str:
        """The browser at the provider: the callback path and query on our app."""
        location = urlsplit(await self.fakes[provider].browser_authorize(url))
        assert f"{location.scheme}://{location.netloc}" == ISSUER
        return f"{location.path}?{location.query}"

    async def callback(self, path: str, cookie: str | None) -> aiohttp.ClientResponse:
        headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
        return await self.client.get(path, headers=headers, allow_redirects=False)

    async def sign_in(self, provider: str) -> aiohttp.ClientResponse:
        url, cookie = await self.start(provider)
        return await self.callback(await self.authorize(provider, url), cookie)

    async def tokens(self, provider: str) -> dict[str, Any]:
        response = await self.sign_in(provider)
        body: dict[str, Any] = await response.json()
        assert response.status == 200, body
        return body

    async def link(self, provider: str, access_token: str) -> aiohttp.ClientResponse:
        """POST .../link, then the browser at the provider and back to the callback."""
        started = await self.bearer("POST", f"/auth/identities/{provider}/link", access_token)
        body = await started.json()
        assert started.status == 200, body
        assert set(body) == {"authorization_url"}
        cookie = started.cookies[COOKIE]
        assert cookie["path"] == f"{self.base(provider)}/callback" and cookie["httponly"]
        path = await self.authorize(provider, body["authorization_url"])
        return await self.callback(path, cookie.value)

    async def bearer(self, method: str, path: str, token: str) -> aiohttp.ClientResponse:
        return await self.client.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False
        )

    async def password_user(self, email: str) -> str:
        """A verified account with a password; its access token."""
        container = self.container
        now = container.clock().now()
        async with container.uow() as uow:
            tenant = await uow.tenants.get_by_slug("default")
            assert tenant is not None
            await uow.accounts.add(
                Account(
                    id=uuid.uuid4(),
                    tenant_id=tenant.id,
                    email=Email(email),
                    created_at=now,
                    updated_at=now,
                    password_hash=await container.hasher().hash(PASSWORD),
                    is_verified=True,
                    verified_at=now,
                )
            )
            await uow.commit()
        response = await self.client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert response.status == 200, await response.text()
        token: str = (await response.json())["access_token"]
        return token

    async def count(self, table: Any) -> int:
        engine = create_async_engine(self.database_url)
        try:
            async with engine.connect() as connection:
                query = select(func.count()).select_from(table)
                return int((await connection.execute(query)).scalar_one())
        finally:
            await engine.dispose()


async def make_app(
    aiohttp_client: AiohttpClient,
    database_url: str,
    corp: FakeOidcProvider,
    google: FakeOidcProvider,
    github: FakeGitHub,
    **env: str,
) -> App:
    values = environment(database_url, corp, google, github)
    values.update(env)
    settings = load_settings({key: value for key, value in values.items() if value})
    container = build_container(settings)
    app: web.Application = create_app(settings, container)
    client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
    return App(client, container, {"corp": corp, "google": google, "github": github}, database_url)


@pytest.fixture
async def app(
    aiohttp_client: AiohttpClient,
    migrated_postgres_url: str,
    corp: FakeOidcProvider,
    google: FakeOidcProvider,
    github: FakeGitHub,
) -> App:
    return await make_app(aiohttp_client, migrated_postgres_url, corp, google, github)


async def problem(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    assert response.status == status, body
    assert response.content_type == "application/problem+json"
    assert body["code"] == code, body
    assert "access_token" not in body
    return body


# --- a named OIDC provider ------------------------------------------------------


async def test_a_named_oidc_provider_signs_in_with_its_own_paths_and_client(
    app: App, corp: FakeOidcProvider, google: FakeOidcProvider
) -> None:
    corp.next_identity(sub="corp-1", email="ann@corp.example", name="Ann")

    url, cookie = await app.start("corp")
    query = parse_qs(urlsplit(url).query)
    response = await app.callback(await app.authorize("corp", url), cookie)

    body = await response.json()
    assert response.status == 200, body
    assert query["redirect_uri"] == [f"{ISSUER}/auth/oidc/corp/callback"]
    assert query["client_id"] == ["corp-client"]
    assert query["scope"] == ["openid email profile"]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert body["user"]["email"] == "ann@corp.example"
    assert body["user"]["identities"] == ["corp"]
    assert body["user"]["google_linked"] is False
    assert response.cookies[COOKIE]["max-age"] == "0"
    me = await app.bearer("GET", "/auth/me", body["access_token"])
    assert (await me.json())["identities"] == ["corp"]
    assert google.token_requests == []  # the other instance was never asked


async def test_a_flow_started_at_one_provider_cannot_finish_at_another(
    app: App, corp: FakeOidcProvider, google: FakeOidcProvider
) -> None:
    url, cookie = await app.start("corp")
    path = await app.authorize("corp", url)
    elsewhere = path.replace("/auth/oidc/corp/callback", "/auth/google/callback")

    response = await app.callback(elsewhere, cookie)

    await problem(response, 400, "oauth_failed")
    assert corp.token_requests == [] and google.token_requests == []
    # Spent at the wrong door: the right one refuses it now too.
    await problem(await app.callback(path, cookie), 400, "oauth_failed")
    assert await app.count(tables.sessions) == 0


@pytest.mark.parametrize(
    "path",
    ["/auth/oidc/unknown/login", "/auth/oidc/google/login", "/auth/oidc/github/callback"],
)
async def test_a_provider_that_is_not_configured_is_404(app: App, path: str) -> None:
    response = await app.client.get(path, allow_redirects=False)

    await problem(response, 404, "provider_not_configured")


async def test_an_id_token_for_another_client_of_the_provider_is_refused(
    app: App, corp: FakeOidcProvider
) -> None:
    corp.misbehave(azp="another-client-of-corp")

    await problem(await app.sign_in("corp"), 400, "oauth_failed")
    assert await app.count(tables.users) == 0


# --- GitHub -----------------------------------------------------------------------


async def test_github_signs_in_with_the_verified_primary_email(
    app: App, github: FakeGitHub
) -> None:
    github.next_user(
        id=9001,
        login="ada",
        name=None,
        public_email="shown@example.org",
        emails=[secondary("old@example.org"), primary("Ada@Example.org")],
    )

    url, cookie = await app.start("github")
    query = parse_qs(urlsplit(url).query)
    response = await app.callback(await app.authorize("github", url), cookie)

    body = await response.json()
    assert response.status == 200, body
    assert urlsplit(url).path == "/login/oauth/authorize"
    assert query["scope"] == ["user:email"]
    assert query["redirect_uri"] == [f"{ISSUER}/auth/github/callback"]
    assert query["code_challenge_method"] == ["S256"]
    assert body["user"]["email"] == "Ada@example.org"
    assert body["user"]["full_name"] == "ada"
    assert body["user"]["identities"] == ["github"]
    [form] = github.token_requests
    assert form["code_verifier"] and form["redirect_uri"] == f"{ISSUER}/auth/github/callback"
    async with app.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        link = await uow.external_identities.get(tenant.id, "github", "9001")
    assert link is not None and str(link.user_id) == body["user"]["id"]


@pytest.mark.parametrize(
    "emails",
    [
        [primary("ada@example.org", verified=False), secondary("ada@work.example")],
        [secondary("ada@work.example")],
        [],
    ],
    ids=["primary-unverified", "no-primary", "none"],
)
async def test_github_without_a_verified_primary_email_is_refused(
    app: App, github: FakeGitHub, emails: list[dict[str, Any]]
) -> None:
    github.next_user(id=77, emails=emails)

    body = await problem(await app.sign_in("github"), 400, "oauth_failed")

    assert "verified primary email" in body["detail"]
    assert await app.count(tables.users) == 0


async def test_a_github_code_is_redeemed_once(app: App, github: FakeGitHub) -> None:
    first_url, first_cookie = await app.start("github")
    first_path = await app.authorize("github", first_url)
    assert (await app.callback(first_path, first_cookie)).status == 200
    # A fresh flow of ours carrying the spent code: GitHub refuses the code.
    second_url, second_cookie = await app.start("github")
    state = parse_qs(urlsplit(second_url).query)["state"][0]
    code = parse_qs(urlsplit(first_path).query)["code"][0]

    replay = await app.callback(
        f"/auth/github/callback?{urlencode({'code': code, 'state': state})}", second_cookie
    )

    await problem(replay, 400, "oauth_failed")
    assert len(github.token_requests) == 2
    assert await app.count(tables.sessions) == 1


async def test_a_bad_github_state_never_reaches_github(app: App, github: FakeGitHub) -> None:
    url, cookie = await app.start("github")
    path = await app.authorize("github", url)

    response = await app.callback(path.replace("state=", "state=x"), cookie)

    await problem(response, 400, "oauth_failed")
    assert github.token_requests == []


async def test_github_down_is_a_503_for_github_only(
    app: App, github: FakeGitHub, corp: FakeOidcProvider
) -> None:
    url, cookie = await app.start("github")
    path = await app.authorize("github", url)
    await github.close()

    await problem(await app.callback(path, cookie), 503, "provider_unavailable")
    assert (await app.sign_in("corp")).status == 200


@pytest.mark.parametrize("fault", [{"slow": True}, {"api_status": 502}, {"token_status": 500}])
async def test_a_slow_or_failing_github_answers_503_within_the_timeout(
    app: App, github: FakeGitHub, fault: dict[str, Any]
) -> None:
    url, cookie = await app.start("github")
    path = await app.authorize("github", url)
    github.misbehave(**fault)

    started = time.monotonic()
    response = await app.callback(path, cookie)

    await problem(response, 503, "provider_unavailable")
    # One call at most hangs for the timeout; generous for a busy machine.
    assert time.monotonic() - started < TIMEOUT_SECONDS + 4
    assert await app.count(tables.users) == 0


# --- linked identities --------------------------------------------------------------


async def test_a_signed_in_user_links_lists_and_unlinks_identities(
    app: App, github: FakeGitHub, corp: FakeOidcProvider
) -> None:
    token = await app.password_user("bea@example.com")
    github.next_user(id=501, login="bea", emails=[primary("bea@users.example")])

    linked = await app.link("github", token)

    body = await linked.json()
    assert linked.status == 200, body
    assert body["provider"] == "github" and body["email"] == "bea@users.example"
    assert body["linked_at"].endswith("Z")
    assert linked.cookies[COOKIE]["max-age"] == "0"
    listed = await (await app.bearer("GET", "/auth/identities", token)).json()
    assert listed == {"items": [body]}
    me = await (await app.bearer("GET", "/auth/me", token)).json()
    assert me["identities"] == ["github"]
    # The link signs in: GitHub now opens Bea's account, not a new one.
    assert (await app.tokens("github"))["user"]["id"] == me["id"]

    # A second identity at the same provider is refused at once.
    again = await app.bearer("POST", "/auth/identities/github/link", token)
    await problem(again, 409, "identity_in_use")

    unlinked = await app.bearer("DELETE", "/auth/identities/github", token)
    assert unlinked.status == 204
    await problem(await app.bearer("DELETE", "/auth/identities/github", token), 404, "not_found")
    assert (await (await app.bearer("GET", "/auth/identities", token)).json()) == {"items": []}


async def test_an_identity_linked_to_another_user_cannot_be_linked(
    app: App, corp: FakeOidcProvider
) -> None:
    corp.next_identity(sub="corp-shared", email="cy@corp.example")
    owner = await app.tokens("corp")
    token = await app.password_user("dan@example.com")

    response = await app.link("corp", token)

    await problem(response, 409, "identity_in_use")
    async with app.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        link = await uow.external_identities.get(tenant.id, "corp", "corp-shared")
    assert link is not None and str(link.user_id) == owner["user"]["id"]


async def test_a_link_flow_needs_the_browser_that_started_it(app: App, github: FakeGitHub) -> None:
    token = await app.password_user("eli@example.com")
    started = await app.bearer("POST", "/auth/identities/github/link", token)
    path = await app.authorize("github", (await started.json())["authorization_url"])

    # The victim's browser, sent the attacker's link URL, has no such cookie.
    await problem(await app.callback(path, None), 400, "oauth_failed")
    assert github.token_requests == []
    assert await app.count(tables.external_identities) == 0


async def test_the_last_way_to_sign_in_cannot_be_unlinked(
    app: App, github: FakeGitHub, corp: FakeOidcProvider
) -> None:
    github.next_user(id=808, emails=[primary("fay@example.com")])
    token = (await app.tokens("github"))["access_token"]  # no password

    refused = await app.bearer("DELETE", "/auth/identities/github", token)

    await problem(refused, 409, "last_sign_in_method")
    assert await app.count(tables.external_identities) == 1
    corp.next_identity(sub="corp-fay", email="fay@corp.example")
    assert (await app.link("corp", token)).status == 200
    assert (await app.bearer("DELETE", "/auth/identities/github", token)).status == 204
    await problem(
        await app.bearer("DELETE", "/auth/identities/corp", token), 409, "last_sign_in_method"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/auth/identities"),
        ("POST", "/auth/identities/github/link"),
        ("DELETE", "/auth/identities/github"),
    ],
)
async def test_identity_management_needs_a_bearer_token(app: App, method: str, path: str) -> None:
    response = await app.client.request(method, path)

    await problem(response, 401, "invalid_token")


# --- configuration and start-up ---------------------------------------------------------


async def test_a_tenant_brings_its_own_github_client(
    aiohttp_client: AiohttpClient,
    migrated_postgres_url: str,
    corp: FakeOidcProvider,
    google: FakeOidcProvider,
    github: FakeGitHub,
) -> None:
    app = await make_app(
        aiohttp_client,
        migrated_postgres_url,
        corp,
        google,
        github,
        IDENTITY_GITHUB_CLIENT_ID="",
        IDENTITY_GITHUB_CLIENT_SECRET="",
    )
    admin = app.container.tenant_admin()
    await admin.create("acme")
    await admin.set("acme", "github_client_id", github.client.client_id)
    await admin.set("acme", "github_client_secret", github.client.client_secret)

    default = await app.client.get("/auth/github/login", allow_redirects=False)
    acme = await app.client.get(
        "/auth/github/login", headers={"X-Tenant": "acme"}, allow_redirects=False
    )

    await problem(default, 404, "provider_not_configured")
    assert acme.status == 302
    path = await app.authorize("github", acme.headers["Location"])
    body = await (await app.callback(path, acme.cookies[COOKIE].value)).json()
    assert body["user"]["tenant"] == "acme"


async def test_a_provider_down_at_start_answers_503_for_itself_only(
    aiohttp_client: AiohttpClient,
    migrated_postgres_url: str,
    corp: FakeOidcProvider,
    google: FakeOidcProvider,
    github: FakeGitHub,
) -> None:
    async with FakeOidcProvider() as gone:
        down_url = gone.discovery_url
    # That port now refuses connections: a provider that is down, not a wrong URL.

    app = await make_app(
        aiohttp_client,
        migrated_postgres_url,
        corp,
        google,
        github,
        IDENTITY_OIDC_CORP_DISCOVERY_URL=down_url,
    )

    await problem(
        await app.client.get("/auth/oidc/corp/login", allow_redirects=False),
        503,
        "provider_unavailable",
    )
    assert (await app.sign_in("google")).status == 200
    assert google.discovery_fetches == 1  # discovered at start, once


async def test_a_discovery_url_that_can_never_work_stops_start_up(
    migrated_postgres_url: str,
    corp: FakeOidcProvider,
    google: FakeOidcProvider,
    github: FakeGitHub,
) -> None:
    values = environment(migrated_postgres_url, corp, google, github)
    values["IDENTITY_OIDC_CORP_DISCOVERY_URL"] = f"{corp.base_url}/not-the-discovery-document"
    settings = load_settings({key: value for key, value in values.items() if value})
    # A bare test server: aiohttp_client would leave its client session open when the
    # app fails to start.
    server = TestServer(create_app(settings, build_container(settings)))
    try:
        with pytest.raises(SettingsError) as failure:
            await server.start_server()
    finally:
        await server.close()

    message = str(failure.value)
    assert message.startswith("IDENTITY_OIDC_CORP_DISCOVERY_URL: ")
    assert "\n" not in message and "404" in message


async def test_links_unlinks_and_provider_sign_ins_are_recorded_as_events(
    app: App, github: FakeGitHub, corp: FakeOidcProvider
) -> None:
    token = await app.password_user("eve-events@example.com")
    github.next_user(id=777, login="eve", emails=[primary("eve@users.example")])
    assert (await app.link("github", token)).status == 200
    assert (await app.bearer("DELETE", "/auth/identities/github", token)).status == 204
    corp.next_identity(sub="corp-eve", email="eve-corp@corp.example", name="Eve")
    url, cookie = await app.start("corp")
    corp_tokens = await (await app.callback(await app.authorize("corp", url), cookie)).json()

    mine = await (await app.bearer("GET", "/auth/me/events", token)).json()
    by_type = {event["type"]: event for event in mine["items"]}
    assert by_type["identity.linked"]["data"] == {"provider": "github"}
    assert by_type["identity.unlinked"]["data"] == {"provider": "github"}
    assert mine["items"][0]["type"] == "identity.unlinked"  # newest first
    theirs = await (await app.bearer("GET", "/auth/me/events", corp_tokens["access_token"])).json()
    logins = [event for event in theirs["items"] if event["type"] == "login.succeeded"]
    assert [event["data"]["method"] for event in logins] == ["oidc"]
