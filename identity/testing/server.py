"""``IdentityTestServer``: the real service, in-process, for other projects' tests.

The server is the application ``identity serve`` runs, built by the same
container, with three things swapped in: storage (memory, a temporary SQLite
file, a Postgres database, or a throwaway testcontainers Postgres), a mailer
that captures instead of sending, and a clock the test moves. Helpers call the
real use cases, so a user made here is made the way ``/auth/register`` makes
one.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast
from uuid import UUID

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from dependency_injector import providers

from identity.adapters.clock import ManualClock
from identity.adapters.email_syntax import normalise_email
from identity.adapters.sqlalchemy import migrate
from identity.application import accounts
from identity.application.api_keys import ApiKeys, CreateKey
from identity.application.mail_delivery import DeliverPendingMail
from identity.application.ports import Clock, Mailer, UnitOfWorkFactory
from identity.domain.api_keys import Scope
from identity.domain.errors import AccountNotFoundError
from identity.domain.otp import OtpPurpose
from identity.domain.tenants import DEFAULT_TENANT_SLUG, Tenant
from identity.entrypoints.container import Container
from identity.entrypoints.http.app import build_container, create_app
from identity.entrypoints.http.views import sign_in_view
from identity.entrypoints.settings import Settings, load_settings
from identity.testing.mail import MailCapture, code_purposes
from identity.testing.storage import TestServerError, in_thread, start_postgres_container

if TYPE_CHECKING:
    from identity.testing.sync import SyncIdentityTestServer

Storage = Literal["memory", "sqlite", "postgres", "testcontainers"]
STORAGES: Final[tuple[str, ...]] = ("memory", "sqlite", "postgres", "testcontainers")

# Defaults that make a test server fast; any of them can be overridden.
_TEST_DEFAULTS: Final[Mapping[str, str]] = {"BCRYPT_ROUNDS": "4", "HASHER_THREADS": "2"}
# A database given by URL outlives the server, and its signing keys are sealed
# with the secret: the next server on it must have the same one. Test data only.
SHARED_DATABASE_SECRET: Final = "identity-test-server-secret-for-test-databases-only"

T = TypeVar("T")

# The HTTP handlers are wired to one container at a time (dependency-injector
# wiring is per module), so two servers in one process would answer from
# each other's containers.
_RUNNING = threading.Lock()


@attrs.frozen
class IdentityUser:
    """A user made by ``create_user``: ``password`` is None for a passwordless one."""

    __test__ = False

    id: UUID
    email: str
    password: str | None = attrs.field(repr=False)
    tenant: str
    verified: bool


@attrs.frozen
class SignedInUser:
    """A verified user with a live session: what the ``identity_user`` fixture gives."""

    __test__ = False

    id: UUID
    email: str
    password: str = attrs.field(repr=False)
    tenant: str
    access_token: str = attrs.field(repr=False)
    refresh_token: str = attrs.field(repr=False)


class _DeliverInOrder(DeliverPendingMail):
    """One delivery run at a time, so ``drain`` cannot return while the background
    worker still holds a message it leased: after ``drain``, every due mail is
    in the capture."""

    def __init__(self, uow: UnitOfWorkFactory, mailer: Mailer, clock: Clock) -> None:
        super().__init__(uow, mailer, clock)
        self._one_at_a_time = asyncio.Lock()

    async def __call__(self) -> int:
        async with self._one_at_a_time:
            return await super().__call__()

    async def drain(self) -> None:
        while await self():
            pass


class _IssueInOrder(accounts.IssueRequestedCodes):
    """As ``_DeliverInOrder``, for the queue of code requests that register and
    request-otp answer before (the codes, and their mail, are made here)."""

    def __init__(self, services: accounts.AccountServices) -> None:
        super().__init__(services)
        self._one_at_a_time = asyncio.Lock()

    async def __call__(self) -> int:
        async with self._one_at_a_time:
            return await super().__call__()

    async def drain(self) -> None:
        while await self():
            pass


def _free_socket(host: str) -> socket.socket:
    """A listening-ready socket on a port the kernel picked; bound before the
    settings are made, so the issuer can name the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class IdentityTestServer:
    """The identity service on ``127.0.0.1`` and a free port, for as long as
    ``async with`` lasts (or ``with server.sync()``).

    ``storage``: ``"memory"`` (fastest, no database), ``"sqlite"`` (a temporary
    file), ``"postgres"`` (``database_url=``, an empty database or one this
    service migrated; its data is kept) or ``"testcontainers"`` (a throwaway
    Postgres container; needs Docker). SQL storage is migrated to the head
    revision first.

    ``settings`` take the names of the ``IDENTITY_*`` variables without the
    prefix (``{"ACCESS_TOKEN_TTL": "15m"}``) and are parsed exactly as the
    environment is; a bad value raises ``SettingsError`` naming it. Unless
    given, ``BCRYPT_ROUNDS`` is 4 and ``SECRET_KEY`` random (with
    ``storage="postgres"``: a fixed test-only value, so later servers on the
    same database can read the signing keys the first one stored).

    ``overrides`` replace container providers by name for this server, e.g.
    ``{"mailer": MyMailer()}`` (mail is still captured, after your mailer
    accepted it) or ``{"rate_limiter": ...}``: see ``docs/adapters.md``.

    ``now`` starts the server's clock (default: the real time); ``clock.advance``
    moves it for every part of the server: token issue and verification, code
    expiry, refresh grace and the in-process rate limits (with ``REDIS_URL``
    the windows are Redis's and do not move).

    One server runs at a time per process.
    """

    __test__ = False

    def __init__(
        self,
        storage: Storage = "memory",
        *,
        database_url: str | None = None,
        settings: Mapping[str, object] | None = None,
        overrides: Mapping[str, object] | None = None,
        now: datetime | None = None,
    ) -> None:
        if storage not in STORAGES:
            raise TestServerError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
        if storage == "postgres" and not database_url:
            raise TestServerError(
                "storage='postgres' needs database_url='postgresql+asyncpg://...' "
                "(or use storage='testcontainers' to start a throwaway one)"
            )
        if storage != "postgres" and database_url:
            raise TestServerError("database_url is only for storage='postgres'")
        self.storage: Storage = storage
        self._database_url = database_url
        self._settings_overrides = {
            name.upper(): str(value) for name, value in (settings or {}).items()
        }
        self._overrides = dict(overrides or {})
        self.clock = ManualClock(now)
        self._runner: web.AppRunner | None = None
        self._container: Container | None = None
        self._mail: MailCapture | None = None
        self._delivery: _DeliverInOrder | None = None
        self._settings: Settings | None = None
        self._url: str | None = None
        self._temporary_dir: Path | None = None
        self._postgres_container: Any = None
        self._holds_lock = False

    # --- what a test reads -------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self._started(self._url)

    @property
    def issuer(self) -> str:
        """The ``iss`` of its tokens (the URL unless ``ISSUER`` was set)."""
        return self.settings.issuer

    @property
    def audience(self) -> str:
        """The ``aud`` of its tokens."""
        return self.settings.audience

    @property
    def jwks_url(self) -> str:
        """Where its public signing keys are served."""
        return f"{self.url}/.well-known/jwks.json"

    @property
    def mail(self) -> MailCapture:
        """Every mail it sent: ``mail.last_code(email, purpose)``, ``mail.messages(email)``."""
        return self._started(self._mail)

    @property
    def settings(self) -> Settings:
        return self._started(self._settings)

    @property
    def container(self) -> Container:
        """The running container, for tests that need a provider the helpers do not cover."""
        return self._started(self._container)

    @staticmethod
    def _started(value: T | None) -> T:
        if value is None:
            raise TestServerError("the test server is not running: use 'async with' first")
        return value

    # --- helpers through the real use cases --------------------------------

    async def create_user(
        self,
        email: str,
        password: str | None = None,
        verified: bool = True,
        tenant: str = DEFAULT_TENANT_SLUG,
        full_name: str | None = None,
    ) -> IdentityUser:
        """Register ``email`` as ``/auth/register`` does; when ``verified``, spend the
        mailed code as ``/auth/verify-otp`` does. A missing tenant is created first.

        Raises ``ValueError`` when the email is already registered there, and the
        service's own errors for a bad email or a refused password.
        """
        container = self.container
        address = normalise_email(email)
        where = await self._tenant(tenant)
        if await self._account_id(where, address.value) is not None:
            raise ValueError(f"{address.value} is already registered in tenant {where.slug!r}")
        register: accounts.RegisterUser = container.register_user()
        await register(accounts.Register(where, address, password, full_name))
        await self._drain_mail()
        if verified:
            code = self.mail.last_code(address.value, OtpPurpose.VERIFICATION)
            if code is None:
                raise TestServerError(f"no verification code was mailed to {address.value}")
            verify: accounts.VerifyOtp = container.verify_otp()
            await verify(accounts.VerifyCode(where, address, code, OtpPurpose.VERIFICATION))
        account_id = await self._account_id(where, address.value)
        assert account_id is not None
        return IdentityUser(account_id, address.value, password, where.slug, verified)

    async def login(
        self, email: str, password: str, tenant: str = DEFAULT_TENANT_SLUG
    ) -> dict[str, Any]:
        """Sign in with a password: the body ``/auth/login`` answers (the token
        response, or ``{"mfa_required": true, ...}`` for a user with a second factor).

        Raises ``InvalidCredentialsError`` (and the other errors of login) as the
        use case does.
        """
        container = self.container
        log_in: accounts.LogInWithPassword = container.log_in()
        result = await log_in(
            accounts.LogIn(await self._tenant(tenant), normalise_email(email), password)
        )
        return sign_in_view(result)

    async def sign_in(
        self,
        email: str | None = None,
        password: str | None = None,
        tenant: str = DEFAULT_TENANT_SLUG,
    ) -> SignedInUser:
        """A new verified user (random email and password unless given) and its tokens."""
        email = email or f"user-{secrets.token_hex(6)}@example.com"
        password = password or f"pw-{secrets.token_urlsafe(12)}"
        user = await self.create_user(email, password, verified=True, tenant=tenant)
        tokens = await self.login(user.email, password, tenant)
        return SignedInUser(
            id=user.id,
            email=user.email,
            password=password,
            tenant=user.tenant,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )

    async def api_key(
        self,
        scopes: Iterable[str],
        tenant: str = DEFAULT_TENANT_SLUG,
        name: str = "test",
    ) -> str:
        """A new API key of ``tenant`` with ``scopes`` (``"users:read"``, ...), made as
        ``identity apikeys create`` makes one: the key to send as a bearer token.

        Raises ``ValueError`` for an unknown scope, and ``ScopeNotGrantableError``
        for a scope the tenant may not hold (``tenants:manage`` outside the default).
        """
        known = {scope.value: scope for scope in Scope}
        wanted = [scopes] if isinstance(scopes, str) else list(scopes)
        unknown = [scope for scope in wanted if scope not in known]
        if unknown:
            raise ValueError(f"unknown scope {unknown[0]!r}; one of: {', '.join(known)}")
        keys: ApiKeys = self.container.api_keys()
        new = await keys.create(
            CreateKey(await self._tenant(tenant), name, frozenset(known[s] for s in wanted))
        )
        return new.token

    async def _tenant(self, slug: str) -> Tenant:
        container = self.container
        tenant_admin = container.tenant_admin()
        wanted = slug.strip().lower()
        found = next((t for t in await tenant_admin.list() if t.slug == wanted), None)
        if found is None:
            found = await tenant_admin.create(wanted)
            # The resolver may have remembered "no such tenant" a moment ago.
            container.resolve_tenant().forget()
        return found

    async def _account_id(self, tenant: Tenant, email: str) -> UUID | None:
        try:
            account = await self.container.user_admin().show(tenant.slug, normalise_email(email))
        except AccountNotFoundError:
            return None
        return account.id

    async def _drain_mail(self) -> None:
        assert self._delivery is not None
        codes = self.container.issue_requested_codes()
        assert isinstance(codes, _IssueInOrder)
        await codes.drain()  # queued code requests become codes and mail
        await self._delivery.drain()

    # --- start and stop ----------------------------------------------------

    async def __aenter__(self) -> IdentityTestServer:
        if not _RUNNING.acquire(blocking=False):
            raise TestServerError(
                "another IdentityTestServer is running in this process; stop it first "
                "(the HTTP handlers are wired to one server at a time)"
            )
        self._holds_lock = True
        try:
            await self._start()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stop()

    def sync(self) -> SyncIdentityTestServer:
        """The same server for non-async code: it runs on its own loop in its own thread."""
        from identity.testing.sync import SyncIdentityTestServer

        return SyncIdentityTestServer(self)

    async def _start(self) -> None:
        database_url = await self._prepare_storage()
        sock = _free_socket("127.0.0.1")
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        try:
            environ = {
                "DATABASE_URL": database_url,
                "SECRET_KEY": (
                    SHARED_DATABASE_SECRET
                    if self.storage == "postgres"
                    else secrets.token_urlsafe(32)
                ),
                **_TEST_DEFAULTS,
                "HOST": "127.0.0.1",
                "PORT": str(port),
                "ISSUER": url,
                **self._settings_overrides,
            }
            settings = load_settings({f"IDENTITY_{name}": value for name, value in environ.items()})
            container = self._container_for(settings)
            self._container, self._settings = container, settings
            if self.storage == "memory":
                # Migrations make the default tenant on SQL storage; memory starts empty.
                await container.tenant_admin().create(DEFAULT_TENANT_SLUG, "Default")
            app = create_app(settings, container)
            app.middlewares.append(_mail_before_answer(self._drain_mail))
            runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
            await runner.setup()
            self._runner = runner
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self._url = url

    def _container_for(self, settings: Settings) -> Container:
        container = build_container(settings)
        clock = self.clock
        container.clock.override(providers.Object(clock))
        if self.storage == "memory":
            container.storage.override(providers.Object("memory"))
        # Rate-limit windows follow the test's clock too: the limiter reads the container's.
        # A swapped mailer sits behind the capture: a test still reads server.mail.
        forward = cast(Mailer | None, self._overrides.get("mailer"))
        mail = MailCapture(code_purposes(container.templates()), clock, forward)
        container.mailer.override(providers.Object(mail))
        for name, value in self._overrides.items():
            provider = getattr(container, name, None)
            if not isinstance(provider, providers.Provider):
                raise TestServerError(f"the container has no provider named {name!r}")
            if name != "mailer":
                provider.override(providers.Object(value))
        delivery = _DeliverInOrder(container.uow, mail, clock)
        container.deliver_mail.override(providers.Object(delivery))
        # Made on first use: the use case needs the signing keys, loaded at start.
        container.issue_requested_codes.override(
            providers.Singleton(_IssueInOrder, container.account_services)
        )
        self._mail, self._delivery = mail, delivery
        return container

    async def _prepare_storage(self) -> str:
        """The database URL the settings get, migrated when it is SQL."""
        if self.storage == "memory":
            # Never opened: the container serves storage from memory.
            return "sqlite+aiosqlite:///:memory:"
        if self.storage == "sqlite":
            self._temporary_dir = Path(tempfile.mkdtemp(prefix="identity-test-"))
            url = f"sqlite+aiosqlite:///{self._temporary_dir / 'identity.db'}"
        elif self.storage == "postgres":
            assert self._database_url is not None
            url = self._database_url
        else:
            self._postgres_container, url = await in_thread(start_postgres_container)
        await in_thread(lambda: migrate.upgrade(url))
        return url

    async def _stop(self) -> None:
        try:
            runner, self._runner = self._runner, None
            if runner is not None:
                await runner.cleanup()
            container = self._container
            if container is not None:
                # The app stopped its hashing threads without waiting; wait, so a
                # stopped server leaves no thread behind.
                container.hasher_executor().shutdown(wait=True, cancel_futures=True)
            if self._temporary_dir is not None:
                shutil.rmtree(self._temporary_dir, ignore_errors=True)
                self._temporary_dir = None
            postgres, self._postgres_container = self._postgres_container, None
            if postgres is not None:
                await in_thread(postgres.stop)
        finally:
            self._container = self._settings = self._url = None
            if self._holds_lock:
                self._holds_lock = False
                _RUNNING.release()


def _mail_before_answer(drain: Callable[[], Awaitable[None]]) -> Middleware:
    """Deliver the mail a request queued before it is answered, so a test reads
    ``server.mail`` right after the response without waiting for the outbox."""

    @web.middleware
    async def deliver_first(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                await drain()

    return deliver_first
