"""Schemathesis against a live server: every described operation, generated requests.

The server is the real application on a real port and a real Postgres
database, run on an event loop of its own in a worker thread (schemathesis
calls it synchronously over HTTP). Operations that need a caller get one: an
access token of a verified user for the ``bearer`` scheme, a key with every
scope for ``apiKey`` (so every ``/admin/*`` operation is exercised). Every
check schemathesis has is on (the CLI's ``--checks all``), on data that fits
the document and on data that does not (``--mode all``): no server error;
status codes, content types, headers and bodies as described; schema-valid
requests accepted and invalid ones refused; required headers, methods, auth.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.config._checks import (
    POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES,
    PositiveDataAcceptanceConfig,
)
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case

from identity.application.api_keys import CreateKey
from identity.domain.api_keys import Scope
from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import load_settings
from tests.databases import PostgresDatabases
from tests.integration.http.conftest import PASSWORD, code_in, environment
from tests.smtp_server import SmtpTestServer

T = TypeVar("T")


def _import_all(package: Any) -> None:
    """Pytest rewrites the asserts of every installed plugin's modules as they are
    imported, schemathesis's included. Schemathesis imports many of them lazily,
    deep in a test's stack, where CPython 3.11 can fail to parse one ("AST
    constructor recursion depth mismatch"); imported now, at collection, they are
    parsed on a shallow stack."""
    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        with contextlib.suppress(Exception):  # adapters for frameworks not installed
            importlib.import_module(module.name)


_import_all(schemathesis)

load_all_checks()
# Every check schemathesis has (``--checks all``); the class-based ones are per run.
CHECKS = [check for check in REGISTERED_CHECKS.get_all() if not isinstance(check, type)]
EXAMPLES = 25
# A request that fits the document may still be refused by a rule the document
# cannot state: a wrong one-time code or state is 400 (`otp_invalid`,
# `mfa_invalid`, `oauth_failed`), a common password, an address the email
# validator refuses or a webhook URL to a private host is 422.
ACCEPTED_WHEN_VALID = [*POSITIVE_DATA_ACCEPTANCE_EXPECTED_STATUSES, "400", "422"]


class LiveServer:
    """The application on 127.0.0.1 in a thread with its own loop, with a caller of each kind."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._smtp = SmtpTestServer()
        self.url = ""
        self.access_token = ""
        self.api_key = ""

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=60)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        await self._smtp.start()
        env = environment(self._database_url, self._smtp.port)
        app = create_app(load_settings(env))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        container = app[CONTAINER]
        tenant = await container.resolve_tenant()(None)
        new = await container.api_keys().create(CreateKey(tenant, "schemathesis", frozenset(Scope)))
        self.api_key = new.token
        self.access_token = await self._verified_user()

    async def _verified_user(self) -> str:
        email = f"st-{uuid.uuid4().hex[:8]}@example.com"
        async with aiohttp.ClientSession(self.url) as http:
            response = await http.post(
                "/auth/register", json={"email": email, "password": PASSWORD}
            )
            assert response.status == 202, await response.text()
            (message,) = await self._smtp.wait_for_messages(1, timeout=10)
            response = await http.post(
                "/auth/verify-otp",
                json={"email": email, "otp_code": code_in(message), "purpose": "verification"},
            )
            assert response.status == 200, await response.text()
            return str((await response.json())["access_token"])

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self._smtp.stop()

        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def credential_for(self, case: Case) -> str | None:
        security = case.operation.definition.raw.get("security", [])
        if {"bearer": []} in security:
            return self.access_token
        if {"apiKey": []} in security:
            return self.api_key
        return None


@pytest.fixture(scope="module")
def live_server(postgres_databases: PostgresDatabases) -> Iterator[LiveServer]:
    server = LiveServer(postgres_databases.create_migrated())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_every_operation_answers_as_documented(live_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    schema.config.checks.positive_data_acceptance = PositiveDataAcceptanceConfig(
        expected_statuses=ACCEPTED_WHEN_VALID
    )
    failures: list[str] = []
    operations = 0
    assert len(CHECKS) >= 14, [check.__name__ for check in CHECKS]
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
            GenerationMode.NEGATIVE
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Case) -> None:
            headers = {}
            credential = live_server.credential_for(case)
            if credential is not None:
                headers["Authorization"] = f"Bearer {credential}"
            case.call_and_validate(
                base_url=live_server.url, headers=headers, checks=CHECKS, timeout=10
            )

        try:
            check()
        except Exception as error:  # every operation is tried; all failures are reported
            failures.append(f"{operation.label}: {error}")
    assert operations >= 20, "the document describes the whole API"
    assert not failures, "\n\n".join(failures)
