"""Tenants over HTTP (API.md §8): the real application on Postgres, mail read over SMTP.

A second tenant ``acme`` is created with the container's ``tenant_admin()`` (what
``identity tenants create`` runs) and chosen with the ``X-Tenant`` header.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import parseaddr
from typing import Any
from uuid import UUID

import jwt
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from identity.adapters.sqlalchemy.tables import outbox
from identity.domain.tenants import Tenant
from identity.entrypoints.http import app as app_module
from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import load_settings
from tests.integration.http.conftest import Api, environment, problem_of
from tests.smtp_server import SmtpTestServer

DEFAULT_PASSWORD = "default tenant passphrase one"
ACME_PASSWORD = "acme tenant passphrase two"
NEW_PASSWORD = "an entirely new passphrase"
ACME_SENDER = "Acme <no-reply@acme.example>"
EMAIL = "shared@example.com"


class Tenanted:
    """Requests to one app as one tenant: the ``X-Tenant`` header, or none for ``default``."""

    def __init__(self, api: Api, slug: str | None) -> None:
        self.api = api
        self.slug = slug or "default"
        self._header = {"X-Tenant": slug} if slug else {}

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = dict(self._header)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def post(
        self, path: str, body: Any = None, *, token: str | None = None
    ) -> ClientResponse:
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return await self.api.client.post(path, headers=self._headers(token), **kwargs)

    async def get(self, path: str, *, token: str | None = None) -> ClientResponse:
        return await self.api.client.get(path, headers=self._headers(token))

    async def delete(self, path: str, *, token: str | None = None) -> ClientResponse:
        return await self.api.client.delete(path, headers=self._headers(token))

    async def ok(self, response: ClientResponse, status: int = 200) -> dict[str, Any]:
        text = await response.text()
        assert response.status == status, f"{self.slug}: {text}"
        return dict(await response.json())

    async def register(self, email: str, password: str) -> None:
        await self.ok(
            await self.post("/auth/register", {"email": email, "password": password}), 202
        )

    async def register_verified(self, email: str, password: str) -> dict[str, Any]:
        await self.register(email, password)
        code = await self.api.next_code(email)
        return await self.ok(
            await self.post(
                "/auth/verify-otp", {"email": email, "otp_code": code, "purpose": "verification"}
            )
        )

    async def login(self, email: str, password: str) -> ClientResponse:
        return await self.post("/auth/login", {"email": email, "password": password})

    async def me(self, token: str) -> ClientResponse:
        return await self.get("/auth/me", token=token)

    async def session_ids(self, access_token: str) -> list[str]:
        body = await self.ok(await self.get("/auth/sessions", token=access_token))
        return [session["id"] for session in body["sessions"]]


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    async with SmtpTestServer() as server:
        yield server


@pytest.fixture
async def api(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[
        [web.Application], Awaitable[TestClient[web.Request, web.Application]]
    ],
    monkeypatch: pytest.MonkeyPatch,
) -> Api:
    # The outbox worker polls more often than in production, so a test waits less per mail.
    monkeypatch.setattr(app_module, "OUTBOX_POLL_SECONDS", 0.05)
    environ = environment(migrated_postgres_url, smtp.port)
    settings = load_settings(environ)
    app = create_app(settings)
    client = await aiohttp_client(app)
    return Api(client, smtp, settings, app[CONTAINER], environ)


@pytest.fixture
async def acme_tenant(api: Api) -> Tenant:
    return await api.container.tenant_admin().create("acme", "Acme")


@pytest.fixture
def default(api: Api) -> Tenanted:
    return Tenanted(api, None)


@pytest.fixture
def acme(api: Api, acme_tenant: Tenant) -> Tenanted:
    return Tenanted(api, "acme")


async def set_tenant(api: Api, slug: str, key: str, value: str) -> None:
    """Store a per-tenant setting and drop the app's tenant cache (5 s otherwise)."""
    await api.container.tenant_admin().set(slug, key, value)
    api.container.resolve_tenant().forget()


async def outbox_rows_by_tenant(api: Api) -> dict[UUID, int]:
    async with api.container.engine().connect() as connection:
        rows = await connection.execute(
            select(outbox.c.tenant_id, func.count()).group_by(outbox.c.tenant_id)
        )
        return {UUID(str(tenant_id)): count for tenant_id, count in rows}


def access_lifetime(access_token: str) -> int:
    claims = jwt.decode(access_token, options={"verify_signature": False})
    return int(claims["exp"]) - int(claims["iat"])


# --- one email, two accounts ---------------------------------------------------------


async def test_the_same_email_is_two_independent_accounts_with_their_own_passwords(
    api: Api, default: Tenanted, acme: Tenanted
) -> None:
    in_default = await default.register_verified(EMAIL, DEFAULT_PASSWORD)
    in_acme = await acme.register_verified(EMAIL, ACME_PASSWORD)

    assert in_default["user"]["tenant"] == "default"
    assert in_acme["user"]["tenant"] == "acme"
    assert in_default["user"]["id"] != in_acme["user"]["id"]

    # Each password opens only its own tenant's account.
    default_login = await default.ok(await default.login(EMAIL, DEFAULT_PASSWORD))
    acme_login = await acme.ok(await acme.login(EMAIL, ACME_PASSWORD))
    await problem_of(await default.login(EMAIL, ACME_PASSWORD), 401, "invalid_credentials")
    await problem_of(await acme.login(EMAIL, DEFAULT_PASSWORD), 401, "invalid_credentials")

    me_default = await default.ok(await default.me(default_login["access_token"]))
    me_acme = await acme.ok(await acme.me(acme_login["access_token"]))
    assert (me_default["tenant"], me_acme["tenant"]) == ("default", "acme")
    assert me_default["email"] == me_acme["email"] == EMAIL
    assert me_default["id"] == in_default["user"]["id"]
    assert me_acme["id"] == in_acme["user"]["id"]
    # The access tokens say which tenant issued them.
    default_tid = jwt.decode(default_login["access_token"], options={"verify_signature": False})
    acme_tid = jwt.decode(acme_login["access_token"], options={"verify_signature": False})
    assert default_tid["tid"] != acme_tid["tid"]


async def test_verifying_in_one_tenant_leaves_the_other_unverified(
    api: Api, default: Tenanted, acme: Tenanted
) -> None:
    await default.register_verified(EMAIL, DEFAULT_PASSWORD)
    await acme.register(EMAIL, ACME_PASSWORD)
    acme_code = await api.next_code(EMAIL)

    # acme's account exists but is not verified: its password does not log in yet.
    await problem_of(await acme.login(EMAIL, ACME_PASSWORD), 403, "email_not_verified")
    # A code mailed for acme is worthless under default, and the other way round.
    response = await default.post(
        "/auth/verify-otp", {"email": EMAIL, "otp_code": acme_code, "purpose": "verification"}
    )
    await problem_of(response, 400, "otp_invalid")
    verified = await acme.ok(
        await acme.post(
            "/auth/verify-otp", {"email": EMAIL, "otp_code": acme_code, "purpose": "verification"}
        )
    )
    assert verified["user"]["tenant"] == "acme"


# --- a token of one tenant under another ---------------------------------------------


@pytest.mark.parametrize(("issuer", "presenter"), [("default", "acme"), ("acme", "default")])
async def test_a_token_is_refused_under_another_tenant_and_stays_usable_in_its_own(
    api: Api, default: Tenanted, acme: Tenanted, issuer: str, presenter: str
) -> None:
    tenants = {"default": default, "acme": acme}
    own, other = tenants[issuer], tenants[presenter]
    # The same email exists in both tenants, with the same password even.
    await other.register_verified(EMAIL, DEFAULT_PASSWORD)
    other_tokens = await other.ok(await other.login(EMAIL, DEFAULT_PASSWORD))
    tokens = await own.register_verified(EMAIL, DEFAULT_PASSWORD)
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    [session_id] = await own.session_ids(access)

    refusals = [
        await other.get("/auth/me", token=access),
        await other.get("/auth/sessions", token=access),
        await other.delete(f"/auth/sessions/{session_id}", token=access),
        await other.post("/auth/logout-all", token=access),
        await other.post(
            "/auth/change-password",
            {"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
            token=access,
        ),
        await other.post("/auth/refresh-token", {"refresh_token": refresh}),
        await other.post("/auth/logout", {"refresh_token": refresh}),
    ]
    for response in refusals:
        await problem_of(response, 401, "invalid_token")

    # Nothing of the refused requests reached the issuing tenant.
    me = await own.ok(await own.me(access))
    assert me["tenant"] == issuer
    assert await own.session_ids(access) == [session_id]
    await own.ok(await own.login(EMAIL, DEFAULT_PASSWORD))  # the password did not change
    refreshed = await own.ok(await own.post("/auth/refresh-token", {"refresh_token": refresh}))
    assert refreshed["user"]["tenant"] == issuer
    # Nor the other tenant's own user of the same email.
    await other.ok(await other.me(other_tokens["access_token"]))
    await other.ok(
        await other.post("/auth/refresh-token", {"refresh_token": other_tokens["refresh_token"]})
    )


# --- unknown and disabled tenants ----------------------------------------------------


async def test_an_unknown_tenant_is_not_found(api: Api, default: Tenanted) -> None:
    nowhere = Tenanted(api, "nowhere")
    tokens = await default.register_verified(EMAIL, DEFAULT_PASSWORD)

    await problem_of(
        await nowhere.post("/auth/register", {"email": EMAIL, "password": DEFAULT_PASSWORD}),
        404,
        "tenant_not_found",
    )
    await problem_of(await nowhere.login(EMAIL, DEFAULT_PASSWORD), 404, "tenant_not_found")
    await problem_of(await nowhere.me(tokens["access_token"]), 404, "tenant_not_found")
    response = await nowhere.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    await problem_of(response, 404, "tenant_not_found")
    # Nothing was queued for the unknown tenant: only default's verification code.
    assert sum((await outbox_rows_by_tenant(api)).values()) == 1


async def test_a_disabled_tenant_is_not_found_until_enabled_again(
    api: Api, default: Tenanted, acme: Tenanted
) -> None:
    tokens = await acme.register_verified(EMAIL, ACME_PASSWORD)
    default_tokens = await default.register_verified(EMAIL, DEFAULT_PASSWORD)
    admin = api.container.tenant_admin()

    await admin.set_disabled("acme", True)
    api.container.resolve_tenant().forget()

    await problem_of(
        await acme.post("/auth/register", {"email": "new@example.com", "password": ACME_PASSWORD}),
        404,
        "tenant_not_found",
    )
    await problem_of(await acme.login(EMAIL, ACME_PASSWORD), 404, "tenant_not_found")
    await problem_of(await acme.me(tokens["access_token"]), 404, "tenant_not_found")
    response = await acme.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    await problem_of(response, 404, "tenant_not_found")
    await default.ok(await default.me(default_tokens["access_token"]))

    await admin.set_disabled("acme", False)
    api.container.resolve_tenant().forget()
    assert (await acme.ok(await acme.me(tokens["access_token"])))["tenant"] == "acme"


# --- per-tenant settings ---------------------------------------------------------------


async def test_a_tenant_access_token_ttl_applies_to_that_tenant_only(
    api: Api, default: Tenanted, acme: Tenanted
) -> None:
    await set_tenant(api, "acme", "access_token_ttl", "60")

    acme_tokens = await acme.register_verified(EMAIL, ACME_PASSWORD)
    default_tokens = await default.register_verified(EMAIL, DEFAULT_PASSWORD)
    acme_login = await acme.ok(await acme.login(EMAIL, ACME_PASSWORD))
    acme_refresh = await acme.ok(
        await acme.post("/auth/refresh-token", {"refresh_token": acme_login["refresh_token"]})
    )
    default_login = await default.ok(await default.login(EMAIL, DEFAULT_PASSWORD))

    for body in (acme_tokens, acme_login, acme_refresh):
        assert body["expires_in"] == 60
        assert access_lifetime(body["access_token"]) == 60
    for body in (default_tokens, default_login):
        assert body["expires_in"] == 900
        assert access_lifetime(body["access_token"]) == 900


async def test_a_tenant_sender_is_used_for_its_mail_and_its_outbox_rows_carry_its_id(
    api: Api, default: Tenanted, acme: Tenanted, acme_tenant: Tenant
) -> None:
    await set_tenant(api, "acme", "email_from", ACME_SENDER)
    [default_tenant] = [t for t in await api.container.tenant_admin().list() if t.slug == "default"]

    acme_tokens = await acme.register_verified(EMAIL, ACME_PASSWORD)
    assert await outbox_rows_by_tenant(api) == {acme_tenant.id: 1}
    await default.register_verified(EMAIL, DEFAULT_PASSWORD)
    assert await outbox_rows_by_tenant(api) == {acme_tenant.id: 1, default_tenant.id: 1}
    await acme.ok(
        await acme.post(
            "/auth/change-password",
            {"current_password": ACME_PASSWORD, "new_password": NEW_PASSWORD},
            token=acme_tokens["access_token"],
        )
    )
    notice = await api.next_mail(EMAIL)
    assert await outbox_rows_by_tenant(api) == {acme_tenant.id: 2, default_tenant.id: 1}

    acme_code_mail, default_code_mail = api.mail_for(EMAIL)[:2]
    assert parseaddr(str(acme_code_mail["From"])) == parseaddr(ACME_SENDER)
    assert parseaddr(str(notice["From"])) == parseaddr(ACME_SENDER)
    assert parseaddr(str(default_code_mail["From"])) == parseaddr(api.settings.policy.email_from)
    assert parseaddr(api.settings.policy.email_from) != parseaddr(ACME_SENDER)


async def test_a_tenant_login_rate_limit_applies_to_that_tenant_only(
    api: Api, default: Tenanted, acme: Tenanted
) -> None:
    await set_tenant(api, "acme", "rate_limit_login", "2/minute")
    await acme.register_verified(EMAIL, ACME_PASSWORD)
    await default.register_verified(EMAIL, DEFAULT_PASSWORD)

    for _ in range(2):
        await problem_of(await acme.login(EMAIL, "a wrong passphrase"), 401, "invalid_credentials")
    limited = await acme.login(EMAIL, ACME_PASSWORD)
    await problem_of(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1

    # default keeps the deployment's limit: the same email logs in there as often as before.
    for _ in range(3):
        await problem_of(
            await default.login(EMAIL, "a wrong passphrase"), 401, "invalid_credentials"
        )
    await default.ok(await default.login(EMAIL, DEFAULT_PASSWORD))
