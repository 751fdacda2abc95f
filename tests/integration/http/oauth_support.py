"""What the OAuth tests share: a live server whose issuer is its own address, a fake
browser session (the hosted pages' seam), and registered clients."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import attrs
import jwt
from aiohttp import web
from aiohttp.test_utils import TestClient
from dependency_injector import providers

from identity.application.oauth_clients import ClientSpec
from identity.application.ports import ActiveSessionReader, BrowserSessions, BrowserSignIn
from identity.domain.oauth import AuthMethod, ClientType, GrantType
from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import load_settings
from tests.integration.http.conftest import Api
from tests.smtp_server import SmtpTestServer

BROWSER_COOKIE = "test_browser"
API_SCOPES = "payments:read,payments:write"
RESOURCE = "https://api.example.com/payments"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class FakeBrowsers(BrowserSessions):
    """Browser sessions by cookie value, live as long as their session is."""

    def __init__(self, reader: ActiveSessionReader) -> None:
        self._reader = reader
        self.signed: dict[str, tuple[UUID, BrowserSignIn]] = {}

    async def signed_in(self, tenant_id: UUID, cookies: Mapping[str, str]) -> BrowserSignIn | None:
        entry = self.signed.get(cookies.get(BROWSER_COOKIE, ""))
        if entry is None or entry[0] != tenant_id:
            return None
        sign_in = entry[1]
        account = await self._reader.account_for_session(
            tenant_id, sign_in.session_id, sign_in.user_id, datetime.now(UTC)
        )
        return sign_in if account is not None else None


@attrs.define
class OAuthApi:
    api: Api
    browsers: FakeBrowsers

    @property
    def base(self) -> str:
        return self.api.settings.issuer.rstrip("/")

    async def sign_in_browser(self, email: str, **register: Any) -> tuple[str, dict[str, Any]]:
        """Register and sign in ``email``; a cookie value that is that browser's session."""
        tokens = await self.api.register_verified(email, **register)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        return await self.browser_for(claims["sid"]), tokens

    async def browser_for(self, sid: str, *, auth_time: datetime | None = None) -> str:
        async with self.api.container.uow() as uow:
            tenant = await uow.tenants.get_by_slug("default")
            assert tenant is not None
            session = await uow.sessions.get(tenant.id, UUID(sid))
        assert session is not None
        cookie = uuid.uuid4().hex
        self.browsers.signed[cookie] = (
            tenant.id,
            BrowserSignIn(
                session.id,
                session.user_id,
                auth_time or session.created_at,
                session.aal,
                session.amr,
            ),
        )
        return cookie

    async def client(self, **spec: Any) -> tuple[str, str | None]:
        tenant = await self.api.container.resolve_tenant()("default")
        values: dict[str, Any] = {
            "name": "RP",
            "redirect_uris": ("https://rp.example/cb",),
            **spec,
        }
        new = await self.api.container.client_admin().create(tenant, ClientSpec(**values))
        return new.client.client_id, new.secret

    async def confidential(self, **spec: Any) -> tuple[str, str]:
        client_id, secret = await self.client(**spec)
        assert secret is not None
        return client_id, secret

    async def public(self, **spec: Any) -> str:
        client_id, _ = await self.client(
            type=ClientType.PUBLIC,
            redirect_uris=("http://127.0.0.1/callback",),
            **spec,
        )
        return client_id


async def start_oauth_api(
    smtp: SmtpTestServer,
    database_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    *,
    fake_browsers: bool = True,
    **env: str,
) -> OAuthApi:
    from tests.integration.http.conftest import environment

    port = free_port()
    environ = environment(database_url, smtp.port, ISSUER=f"http://127.0.0.1:{port}", **env)
    settings = load_settings(environ)
    app: web.Application = create_app(settings)
    container = app[CONTAINER]
    browsers = FakeBrowsers(container.session_reader())
    if fake_browsers:  # else the hosted pages' real browser session
        container.browser_sessions.override(providers.Object(browsers))
    client = await aiohttp_client(app, server_kwargs={"port": port})
    api = Api(client, smtp, settings, container, environ)
    await container.tenant_admin().set("default", "oauth_scopes", API_SCOPES)
    await container.tenant_admin().set("default", "oauth_resources", RESOURCE)
    return OAuthApi(api, browsers)


__all__ = ["AuthMethod", "GrantType", "OAuthApi", "start_oauth_api"]
