"""``SyncIdentityTestServer``: the test server for code that is not async."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from identity.adapters.clock import ManualClock
from identity.domain.tenants import DEFAULT_TENANT_SLUG
from identity.entrypoints.settings import Settings
from identity.testing.mail import MailCapture
from identity.testing.storage import TestServerError

if TYPE_CHECKING:
    from identity.testing.server import IdentityTestServer, IdentityUser, SignedInUser, Storage

T = TypeVar("T")


async def _finish_loop() -> None:
    loop = asyncio.get_running_loop()
    await loop.shutdown_asyncgens()
    await loop.shutdown_default_executor()


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()


class SyncIdentityTestServer:
    """``IdentityTestServer`` for plain (non-async) code: the same properties, and
    the helpers as ordinary methods. The server runs on a loop in its own thread,
    so it also serves an ``async def`` test that calls these methods."""

    __test__ = False

    def __init__(self, server: IdentityTestServer) -> None:
        self._server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> SyncIdentityTestServer:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name="identity-test-server", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self._run(self._server.__aenter__())
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._run(self._server.__aexit__(None, None, None))
        finally:
            self._close_loop()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coroutine.close()
            raise TestServerError("the test server is not running: use 'with' first")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def _close_loop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(_finish_loop(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return self._server.url

    @property
    def issuer(self) -> str:
        """The ``iss`` of its tokens."""
        return self._server.issuer

    @property
    def audience(self) -> str:
        """The ``aud`` of its tokens."""
        return self._server.audience

    @property
    def jwks_url(self) -> str:
        """Where its public signing keys are served."""
        return self._server.jwks_url

    @property
    def mail(self) -> MailCapture:
        """Every mail it sent (safe to read from this thread)."""
        return self._server.mail

    @property
    def clock(self) -> ManualClock:
        """Its clock: ``clock.advance(minutes=16)``."""
        return self._server.clock

    @property
    def settings(self) -> Settings:
        """The settings it runs with."""
        return self._server.settings

    @property
    def storage(self) -> Storage:
        """``memory``, ``sqlite``, ``postgres`` or ``testcontainers``."""
        return self._server.storage

    def create_user(
        self,
        email: str,
        password: str | None = None,
        verified: bool = True,
        tenant: str = DEFAULT_TENANT_SLUG,
        full_name: str | None = None,
    ) -> IdentityUser:
        """As ``IdentityTestServer.create_user``."""
        return self._run(self._server.create_user(email, password, verified, tenant, full_name))

    def login(self, email: str, password: str, tenant: str = DEFAULT_TENANT_SLUG) -> dict[str, Any]:
        """As ``IdentityTestServer.login``."""
        return self._run(self._server.login(email, password, tenant))

    def sign_in(
        self,
        email: str | None = None,
        password: str | None = None,
        tenant: str = DEFAULT_TENANT_SLUG,
    ) -> SignedInUser:
        """As ``IdentityTestServer.sign_in``."""
        return self._run(self._server.sign_in(email, password, tenant))

    def api_key(
        self, scopes: Iterable[str], tenant: str = DEFAULT_TENANT_SLUG, name: str = "test"
    ) -> str:
        """As ``IdentityTestServer.api_key``."""
        return self._run(self._server.api_key(scopes, tenant, name))
