"""Fixtures: a real identity server per test, and verifiers pointed at it.

``database_url`` (function)
    A fresh Postgres database at the migrations' head, on the server named by
    ``IDENTITY_TEST_DATABASE_URL`` (default: the local one, user postgres).
``identity_server`` (function)
    An ``IdentityServer`` started on it. A test marked
    ``@pytest.mark.key_reload_seconds(0.05)`` gets a server that reloads its
    signing keys that often (instead of every 15 s); one marked
    ``@pytest.mark.server_env(SIGNING_ALGORITHM="RS256")`` gets those
    ``IDENTITY_*`` settings.
``make_verifier`` (function)
    ``make_verifier(**kwargs)``: a ``Verifier`` for that server (issuer and
    audience filled in), closed after the test.
``clock`` (function)
    A ``ManualClock`` to hand to ``make_verifier(clock=clock)``.
``jwks_requests`` (function)
    A ``RequestLog`` counting the HTTP requests a verifier made to the server;
    ``make_verifier`` passes it a session that records into it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from identity.entrypoints.http import app as identity_app

from identity_verifier import Verifier

from identity_server import Databases, IdentityServer


class ManualClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RequestLog:
    """The paths of the requests a client session sent, in order."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def count(self, suffix: str) -> int:
        return sum(1 for path in self.paths if path.endswith(suffix))

    def trace(self) -> aiohttp.TraceConfig:
        config = aiohttp.TraceConfig()

        async def started(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            self.paths.append(params.url.path)

        config.on_request_start.append(started)
        return config


@pytest.fixture(scope="session")
def _databases() -> Iterator[Databases]:
    databases = Databases.from_environment()
    yield databases
    databases.drop_all()


@pytest.fixture(autouse=True)
def _prompt_outbox(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server mails codes from a worker polling every 0.5 s; poll faster here."""
    monkeypatch.setattr(identity_app, "OUTBOX_POLL_SECONDS", 0.02)


@pytest.fixture
def database_url(_databases: Databases) -> Iterator[str]:
    url = _databases.create_migrated()
    yield url
    _databases.drop(url)


@pytest.fixture
async def identity_server(
    database_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[IdentityServer]:
    marker = request.node.get_closest_marker("key_reload_seconds")
    if marker is not None:
        # The server reloads its key ring every 15 s; a test of rotation needs it sooner.
        monkeypatch.setattr(identity_app, "KEY_RELOAD_SECONDS", marker.args[0])
    env = request.node.get_closest_marker("server_env")
    server = IdentityServer(database_url, **(env.kwargs if env is not None else {}))
    await server.start()
    yield server
    await server.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def jwks_requests() -> RequestLog:
    return RequestLog()


@pytest.fixture
async def make_verifier(
    identity_server: IdentityServer, jwks_requests: RequestLog
) -> AsyncIterator[Callable[..., Verifier]]:
    made: list[Verifier] = []
    session = aiohttp.ClientSession(trace_configs=[jwks_requests.trace()])

    def build(**kwargs: Any) -> Verifier:
        options: dict[str, Any] = {
            "issuer": identity_server.issuer,
            "audience": "identity",
            "session": session,
            **kwargs,
        }
        verifier = Verifier(**options)
        made.append(verifier)
        return verifier

    yield build
    for verifier in made:
        await verifier.close()
    await session.close()
