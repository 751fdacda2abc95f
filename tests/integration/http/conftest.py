"""HTTP tests: the real application through pytest-aiohttp's test client.

Every app is built by ``create_app(load_settings(env))`` from environment
values, exactly as ``identity serve`` does, and its outbox worker delivers
mail over SMTP to an ``SmtpTestServer``; one-time codes are read from the
mail that arrives.

``smtp`` (function)
    The SMTP server the apps deliver to.
``make_api`` (function)
    ``await make_api(database_url=None, container=None, **env)``: an ``Api``
    on its own app. ``database_url`` defaults to a migrated Postgres
    database; ``env`` adds or replaces ``IDENTITY_*`` values (names without
    the prefix, e.g. ``REFRESH_REUSE_GRACE="1s"``); ``container`` carries
    overrides (build it with ``app.build_container(settings_for(...))``);
    its settings are then the app's.
``env_for`` (function)
    ``env_for(database_url=None, **env)``: the ``IDENTITY_*`` variables
    ``make_api`` would load (also ``Api.environ``), e.g. for the CLI.
``settings_for`` (function)
    ``settings_for(database_url=None, **env)``: the settings ``make_api``
    would load.
``api`` (function)
    ``make_api()`` with the defaults: Postgres, high rate limits.
``sqlite_api`` (function)
    The same on a migrated SQLite file.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from email.message import EmailMessage
from typing import Any, Protocol

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from identity.application.api_keys import CreateKey
from identity.domain.api_keys import Scope
from identity.entrypoints.container import Container
from identity.entrypoints.http import app as http_app
from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import Settings, load_settings
from tests.declared_answers import watch
from tests.smtp_server import SmtpTestServer

PASSWORD = "correct horse battery staple"
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")
MAIL_TIMEOUT = 5.0

# High enough that no test meets a limit it did not ask for.
HIGH_RATE_LIMITS = {
    "RATE_LIMIT_GLOBAL": "100000/minute",
    "RATE_LIMIT_LOGIN": "10000/minute",
    "RATE_LIMIT_OTP_REQUEST": "10000/hour",
    "RATE_LIMIT_OTP_VERIFY": "10000/15m",
}


def environment(database_url: str, smtp_port: int, **overrides: str) -> dict[str, str]:
    """``IDENTITY_*`` variables for a test app; ``overrides`` are named without the prefix."""
    values = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(30),  # 40 characters
        "BCRYPT_ROUNDS": "4",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_port),
        "SMTP_TLS": "none",
        "SMTP_TIMEOUT": "5s",
        "LOG_FORMAT": "json",
        **HIGH_RATE_LIMITS,
        **overrides,
    }
    return {f"IDENTITY_{name}": value for name, value in values.items()}


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None, "the mail has no text part"
    content = part.get_content()
    assert isinstance(content, str)
    return content


def code_in(message: EmailMessage) -> str:
    codes = CODE.findall(text_of(message))
    assert len(codes) == 1, f"expected one 6-digit code in the mail, found {codes}"
    return str(codes[0])


def other_code(code: str) -> str:
    """A well-formed code that is certainly not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def problem_of(response: ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem with ``status`` and ``code``; return its body."""
    text = await response.text()
    assert response.status == status, text
    assert response.content_type == "application/problem+json", text
    body = await response.json(content_type=None)
    assert set(body) >= {"type", "title", "status", "detail", "code"}, body
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["type"], str) and body["type"]
    return dict(body)


class Api:
    """A test client for one app, with the mail it sent."""

    def __init__(
        self,
        client: TestClient[Any, Any],
        smtp: SmtpTestServer,
        settings: Settings,
        container: Container,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.environ = environ  # the IDENTITY_* variables it was loaded from
        self.smtp = smtp
        self.settings = settings
        self.container = container
        self._read: dict[str, int] = {}  # recipient -> messages already handed out

    async def post(
        self, path: str, body: Any = None, *, token: str | None = None, **kwargs: Any
    ) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            kwargs["json"] = body
        return await self.client.post(path, headers=headers, **kwargs)

    async def get(self, path: str, *, token: str | None = None, **kwargs: Any) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.get(path, headers=headers, **kwargs)

    async def delete(self, path: str, *, token: str | None = None, **kwargs: Any) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.client.delete(path, headers=headers, **kwargs)

    def mail_for(self, address: str) -> list[EmailMessage]:
        return [m for m in self.smtp.messages if str(m["To"]).lower() == address.lower()]

    async def next_mail(self, address: str) -> EmailMessage:
        """The next message to ``address`` not handed out before (waits for it)."""
        key = address.lower()
        seen = self._read.get(key, 0)
        while True:
            found = self.mail_for(address)
            if len(found) > seen:
                self._read[key] = seen + 1
                return found[seen]
            await self.smtp.wait_for_messages(len(self.smtp.messages) + 1, timeout=MAIL_TIMEOUT)

    async def next_code(self, address: str) -> str:
        return code_in(await self.next_mail(address))

    async def request_code(self, email: str, purpose: str) -> str:
        response = await self.post("/auth/request-otp", {"email": email, "purpose": purpose})
        assert response.status == 202, await response.text()
        return await self.next_code(email)

    async def register_verified(
        self, email: str, password: str | None = PASSWORD, **extra: Any
    ) -> dict[str, Any]:
        """Register, verify with the mailed code; return the token response."""
        body: dict[str, Any] = {"email": email, **extra}
        if password is not None:
            body["password"] = password
        response = await self.post("/auth/register", body)
        assert response.status == 202, await response.text()
        code = await self.next_code(email)
        return await self.verify(email, code, "verification")

    async def verify(self, email: str, code: str, purpose: str) -> dict[str, Any]:
        response = await self.post(
            "/auth/verify-otp", {"email": email, "otp_code": code, "purpose": purpose}
        )
        assert response.status == 200, await response.text()
        return dict(await response.json())

    async def login(self, email: str, password: str = PASSWORD, **kwargs: Any) -> dict[str, Any]:
        response = await self.post("/auth/login", {"email": email, "password": password}, **kwargs)
        assert response.status == 200, await response.text()
        return dict(await response.json())

    async def me(self, access_token: str) -> ClientResponse:
        return await self.get("/auth/me", token=access_token)

    async def api_key(self, *scopes: str, tenant: str = "default", name: str = "test") -> str:
        """A new API key with ``scopes`` in ``tenant``, minted by the real use case."""
        owner = await self.container.resolve_tenant()(tenant)
        new = await self.container.api_keys().create(
            CreateKey(owner, name, frozenset(Scope(scope) for scope in scopes))
        )
        return new.token

    async def patch(
        self, path: str, body: Any = None, *, token: str | None = None, **kwargs: Any
    ) -> ClientResponse:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            kwargs["json"] = body
        return await self.client.patch(path, headers=headers, **kwargs)


class MakeApi(Protocol):
    def __call__(
        self,
        *,
        database_url: str | None = None,
        container: Container | None = None,
        **env: str,
    ) -> Awaitable[Api]: ...


@pytest.fixture(autouse=True)
def _no_aiohttp_access_log() -> Iterator[None]:
    """As in production: ``identity serve`` runs aiohttp with ``access_log=None`` and
    ``configure_logging`` disables ``aiohttp.access`` (it records query strings).
    The test server cannot be told, so the same switch is thrown here."""
    logger = logging.getLogger("aiohttp.access")
    was_disabled = logger.disabled
    logger.disabled = True
    yield
    logger.disabled = was_disabled


@pytest.fixture(autouse=True)
def _prompt_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The outbox worker polls every 0.5 s; most tests wait for a mail or three,
    so a shorter pause keeps the suite fast. Delivery itself is unchanged."""
    monkeypatch.setattr(http_app, "OUTBOX_POLL_SECONDS", 0.05)


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    async with SmtpTestServer() as server:
        yield server


@pytest.fixture
def env_for(smtp: SmtpTestServer, migrated_postgres_url: str) -> Callable[..., dict[str, str]]:
    """``env_for(database_url=None, **env)``: the environment ``make_api`` would load."""

    def build(*, database_url: str | None = None, **env: str) -> dict[str, str]:
        return environment(database_url or migrated_postgres_url, smtp.port, **env)

    return build


@pytest.fixture
def settings_for(env_for: Callable[..., dict[str, str]]) -> Callable[..., Settings]:
    """``settings_for(database_url=None, **env)``: the settings ``make_api`` would load."""

    def build(*, database_url: str | None = None, **env: str) -> Settings:
        return load_settings(env_for(database_url=database_url, **env))

    return build


@pytest.fixture
def make_api(
    smtp: SmtpTestServer,
    env_for: Callable[..., dict[str, str]],
    aiohttp_client: Callable[[web.Application], Awaitable[TestClient[Any, Any]]],
) -> Iterator[MakeApi]:
    """Builds apps whose every answer is checked against their declarations: a test
    whose requests got an answer the OpenAPI document does not list fails."""
    watched: list[list[str]] = []

    async def build(
        *, database_url: str | None = None, container: Container | None = None, **env: str
    ) -> Api:
        environ: dict[str, str] | None = None
        if container is not None:
            assert database_url is None and not env, "the container's settings decide"
            settings = container.settings()
        else:
            environ = env_for(database_url=database_url, **env)
            settings = load_settings(environ)
        app = create_app(settings, container)
        watched.append(watch(app))
        client = await aiohttp_client(app)
        return Api(client, smtp, settings, app[CONTAINER], environ)

    yield build
    breaches = [breach for app_breaches in watched for breach in app_breaches]
    assert not breaches, "answers the declarations do not list:\n" + "\n".join(breaches)


@pytest.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


@pytest.fixture
async def sqlite_api(make_api: MakeApi, migrated_sqlite_url: str) -> Api:
    return await make_api(database_url=migrated_sqlite_url)
