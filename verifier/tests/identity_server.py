"""The real identity service, served on 127.0.0.1 inside the test's event loop.

The verifier's tests talk to it over HTTP exactly as a downstream service
would: discovery, JWKS, sign-up and login. It is built as ``identity serve``
builds it (``create_app(load_settings(environ))``) on a fresh Postgres database;
mail goes to the development log mailer, whose records the helper reads to
get one-time codes. This module uses the service's packages; the library
under test (``identity_verifier``) never does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import socket
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pyotp
import pytest
from aiohttp import web
from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.adapters.mail.log import DEV_MAIL_LOGGER
from identity.adapters.sqlalchemy.migrate import upgrade
from identity.application.api_keys import CreateKey
from identity.domain.api_keys import Scope
from identity.domain.tokens import AccessClaims
from identity.entrypoints.container import Container
from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import load_settings
from sqlalchemy.engine import make_url

DATABASE_VARIABLE = "IDENTITY_TEST_DATABASE_URL"
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "correct horse battery staple"
AUDIENCE = "identity"
MAIL_TIMEOUT = 5.0
_MAIL = re.compile(r"^To: (?P<to>\S+)$.*?(?<!\d)(?P<code>\d{6})(?!\d)", re.MULTILINE | re.DOTALL)


class Databases:
    """Throwaway Postgres databases, copied from one migrated per session."""

    def __init__(self, server_url: str) -> None:
        self._server = make_url(server_url).set(drivername="postgresql+asyncpg")
        self._created: list[str] = []
        self._template: str | None = None

    @classmethod
    def from_environment(cls) -> Databases:
        databases = cls(os.environ.get(DATABASE_VARIABLE) or DEFAULT_DATABASE_URL)
        try:
            databases._execute("SELECT 1")
        except (OSError, asyncpg.PostgresError) as error:
            pytest.fail(
                f"no Postgres for the verifier's tests ({type(error).__name__}): set "
                f"{DATABASE_VARIABLE} to a server where databases may be created",
                pytrace=False,
            )
        return databases

    def create_migrated(self) -> str:
        if self._template is None:
            self._template = self._create("template0")
            upgrade(self._url(self._template))
        return self._url(self._create(self._template))

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name in self._created:
            self._created.remove(name)
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def drop_all(self) -> None:
        for name in list(self._created):
            self.drop(self._url(name))

    def _create(self, template: str) -> str:
        name = f"identity_verifier_test_{uuid4().hex[:16]}"
        self._execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self._created.append(name)
        return name

    def _url(self, name: str) -> str:
        return self._server.set(database=name).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        dsn = self._server.set(drivername="postgresql").render_as_string(hide_password=False)

        async def execute() -> None:
            connection = await asyncpg.connect(dsn, timeout=10)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        # Its own loop in a thread: callable from sync fixtures and from a running loop.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, execute()).result()


class _Codes(logging.Handler):
    """Collects the one-time codes the development mailer logs, by recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: dict[str, list[str]] = defaultdict(list)
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        match = _MAIL.search(record.getMessage())
        if match is not None:
            self.codes[match["to"].lower()].append(match["code"])
            self.arrived.set()


class IdentityServer:
    """``await start()``, then ``issuer``; ``stop_listening()`` makes it unreachable."""

    def __init__(self, database_url: str, **env: str) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.issuer = f"http://127.0.0.1:{self.port}"
        values = {
            "DATABASE_URL": database_url,
            "SECRET_KEY": secrets.token_urlsafe(30),
            "ISSUER": self.issuer,
            "AUDIENCE": AUDIENCE,
            "BCRYPT_ROUNDS": "4",
            "LOG_FORMAT": "json",
            "RATE_LIMIT_GLOBAL": "100000/minute",
            "RATE_LIMIT_LOGIN": "10000/minute",
            "RATE_LIMIT_OTP_REQUEST": "10000/hour",
            "RATE_LIMIT_OTP_VERIFY": "10000/15m",
            **env,
        }
        self.environ = {f"IDENTITY_{name}": value for name, value in values.items()}
        self.app = create_app(load_settings(self.environ))
        self._runner = web.AppRunner(self.app, access_log=None)
        self._site: web.SockSite | None = None
        self._codes = _Codes()
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        logging.getLogger(DEV_MAIL_LOGGER).addHandler(self._codes)
        logging.getLogger(DEV_MAIL_LOGGER).setLevel(logging.INFO)
        await self._runner.setup()
        self._site = web.SockSite(self._runner, self._socket)
        await self._site.start()
        self._http = aiohttp.ClientSession(base_url=self.issuer)

    async def stop_listening(self) -> None:
        """The issuer goes down: connections to its port are refused from now on."""
        assert self._site is not None
        await self._site.stop()
        self._site = None

    async def close(self) -> None:
        logging.getLogger(DEV_MAIL_LOGGER).removeHandler(self._codes)
        if self._http is not None:
            await self._http.close()
        await self._runner.cleanup()
        self._socket.close()

    def app_container(self) -> Container:
        return self.app[CONTAINER]

    @property
    def codec(self) -> JwtTokenCodec:
        codec: JwtTokenCodec = self.app[CONTAINER].token_codec()
        return codec

    async def post(self, path: str, body: dict[str, Any], **kwargs: Any) -> Any:
        assert self._http is not None
        async with self._http.post(path, json=body, **kwargs) as response:
            answer = await response.json(content_type=None)
            assert response.status < 300, (response.status, answer)
            return answer

    async def post_form(self, path: str, form: dict[str, str], **kwargs: Any) -> Any:
        assert self._http is not None
        async with self._http.post(path, data=form, **kwargs) as response:
            answer = await response.json(content_type=None)
            assert response.status < 300, (response.status, answer)
            return answer

    async def sign_up(self, email: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Register and verify a new account; the token response."""
        email = email or f"user-{uuid4().hex[:12]}@example.com"
        await self.post("/auth/register", {"email": email, "password": PASSWORD}, **kwargs)
        code = await self._code_for(email)
        answer: dict[str, Any] = await self.post(
            "/auth/verify-otp",
            {"email": email, "otp_code": code, "purpose": "verification"},
            **kwargs,
        )
        return answer

    async def sign_up_with_second_factor(self) -> dict[str, Any]:
        """A new account with TOTP on, signed in with password and a recovery code:
        the token response of an aal2 session."""
        email = f"user-{uuid4().hex[:12]}@example.com"
        first = await self.sign_up(email)
        bearer = {"Authorization": f"Bearer {first['access_token']}"}
        enrolled = await self.post("/auth/mfa/totp/enroll", {}, headers=bearer)
        code = pyotp.TOTP(enrolled["secret"]).now()
        confirmed = await self.post("/auth/mfa/totp/confirm", {"code": code}, headers=bearer)
        challenge = await self.post("/auth/login", {"email": email, "password": PASSWORD})
        answer: dict[str, Any] = await self.post(
            "/auth/mfa/verify",
            {"mfa_token": challenge["mfa_token"], "recovery_code": confirmed["recovery_codes"][0]},
        )
        return answer

    async def login(self, email: str, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.post(
            "/auth/login", {"email": email, "password": PASSWORD}, **kwargs
        )
        return answer

    async def api_key(self, *scopes: str, tenant: str = "default") -> str:
        """A new API key, minted by the server's own use case (what the CLI runs)."""
        container = self.app_container()
        owner = await container.resolve_tenant()(tenant)
        new = await container.api_keys().create(
            CreateKey(owner, "verifier-test", frozenset(Scope(scope) for scope in scopes))
        )
        return str(new.token)

    async def log_out(self, refresh_token: str) -> None:
        await self.post("/auth/logout", {"refresh_token": refresh_token})

    def expired_access_token(self) -> str:
        """Signed with the server's own current key, but an hour past its expiry."""
        now = datetime.now(UTC)
        token: str = self.codec.encode_access(
            AccessClaims(
                subject=uuid4(),
                session_id=uuid4(),
                tenant_id=UUID(int=1),
                token_id=uuid4().hex,
                email="late@example.com",
                email_verified=True,
                issued_at=now - timedelta(hours=2),
                expires_at=now - timedelta(hours=1),
            )
        )
        return token

    async def rotate_keys(self) -> str:
        """What ``identity keys rotate`` runs (the key store adds a new key to the
        database); the server signs with it from its next reload. The new kid."""
        container = self.app_container()
        key = await container.key_store().add_new(container.clock().now())
        return str(key.kid)

    async def _code_for(self, email: str) -> str:
        key = email.lower()
        async with asyncio.timeout(MAIL_TIMEOUT):
            while not self._codes.codes[key]:
                self._codes.arrived.clear()
                await self._codes.arrived.wait()
        return self._codes.codes[key].pop(0)
