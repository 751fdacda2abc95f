"""Throwaway databases and services for the integration tests.

The servers come from the environment (``IDENTITY_TEST_DATABASE_URL``,
``IDENTITY_TEST_REDIS_URL``) or, when those are unset and Docker answers,
from testcontainers started once per session. Every database handed to a test
is created for it under a random name, so no run depends on another and runs
on one shared server never collide.

Everything here is synchronous on purpose: fixtures built on it work for
``async def`` tests and plain ones (the CLI calls ``asyncio.run`` itself), and
no asyncpg connection outlives the event loop it was opened on. The async
work runs on a private loop in a worker thread.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.engine import URL, make_url

from identity.adapters.sqlalchemy.migrate import upgrade

POSTGRES_URL_VARIABLE = "IDENTITY_TEST_DATABASE_URL"
REDIS_URL_VARIABLE = "IDENTITY_TEST_REDIS_URL"
POSTGRES_IMAGE = "postgres:16-alpine"
REDIS_IMAGE = "redis:7-alpine"
DATABASE_PREFIX = "identity_test_"

T = TypeVar("T")


class ServiceUnavailableError(Exception):
    """No server configured and no Docker to start one; the text says what to set."""


def run_sync(make_coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a fresh loop in a worker thread.

    Safe whether or not the calling thread already runs an event loop. A thread that
    runs none (the drop worker) runs it itself: a passing thread would show up in the
    thread-leak checks of whatever test is running meanwhile.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make_coroutine())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make_coroutine())).result()


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0


def asyncpg_url(url: str) -> str:
    """Force the SQLAlchemy driver the application uses."""
    return make_url(url).set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def _libpq_dsn(url: str | URL) -> str:
    """asyncpg takes ``postgresql://`` URLs without a SQLAlchemy driver suffix."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def start_postgres(stack: ExitStack, environ: dict[str, str]) -> str:
    """The URL of a Postgres server (its ``postgres`` database) the tests may use."""
    configured = environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if configured:
        return with_database(asyncpg_url(configured), "postgres")
    if not docker_available():
        raise ServiceUnavailableError(
            f"No Postgres for the integration tests: set {POSTGRES_URL_VARIABLE} to a server "
            "the tests may create and drop databases on (for example "
            "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres), or make Docker "
            "available so a container can be started."
        )
    from testcontainers.postgres import PostgresContainer

    container = stack.enter_context(PostgresContainer(POSTGRES_IMAGE, driver="asyncpg"))
    return with_database(container.get_connection_url(), "postgres")


def start_redis(stack: ExitStack, environ: dict[str, str]) -> str:
    configured = environ.get(REDIS_URL_VARIABLE, "").strip()
    if configured:
        return configured
    if not docker_available():
        raise ServiceUnavailableError(
            f"No Redis for the integration tests: set {REDIS_URL_VARIABLE} to a Redis the "
            "tests may write keys to (for example redis://127.0.0.1:6379/0), or make Docker "
            "available so a container can be started."
        )
    from testcontainers.redis import RedisContainer

    container = stack.enter_context(RedisContainer(REDIS_IMAGE))
    host = container.get_container_host_ip()
    port = container.get_exposed_port(container.port)
    return f"redis://{host}:{port}/0"


class PostgresDatabases:
    """Creates uniquely named databases on one server and drops them again.

    ``create()`` gives an empty database, ``create(template=...)`` a copy of
    another one (Postgres copies files, far cheaper than migrating again).
    ``drop_all()`` removes whatever is left; ``WITH (FORCE)`` ends
    connections a test may have leaked.

    Drops, and the copy the next ``create_migrated()`` will hand out, run on a
    worker thread meanwhile: ``DROP DATABASE`` waits for a checkpoint (0.5-1 s on
    a busy machine), which no test needs to sit through.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._created: list[str] = []
        self._lock = threading.Lock()
        self._migrated_template: str | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._next_migrated: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def check_connection(self) -> None:
        async def ping() -> None:
            connection = await asyncpg.connect(_libpq_dsn(self.server_url), timeout=10)
            try:
                await connection.execute("SELECT 1")
            finally:
                await connection.close()

        run_sync(ping)

    def create(self, template: str | None = None) -> str:
        name = f"{DATABASE_PREFIX}{uuid.uuid4().hex[:16]}"
        # template0 is empty by definition; template1 may carry a server's extras.
        source = quote_identifier(template or "template0")
        self._execute(f"CREATE DATABASE {quote_identifier(name)} TEMPLATE {source}")
        with self._lock:
            self._created.append(name)
        return with_database(self.server_url, name)

    def create_migrated(self) -> str:
        """A database at the migrations' head, copied from one migrated per session."""
        if self._migrated_template is None:
            template_url = self.create()
            upgrade(template_url)
            self._migrated_template = make_url(template_url).database
        template = self._migrated_template
        ready = self._next_migrated or self._worker.submit(self.create, template)
        self._next_migrated = self._worker.submit(self.create, template)
        return ready.result()

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self._lock:
            if name not in self._created:
                return
            self._created.remove(name)
        self._drops = [drop for drop in self._drops if not drop.done() or drop.exception()]
        self._drops.append(self._worker.submit(self._drop, name))

    def drop_all(self) -> None:
        """Drop every database made, once the worker's pending drops are done (their
        errors are raised here)."""
        self._next_migrated = None
        self._worker.shutdown(wait=True)
        drops, self._drops = self._drops, []
        with self._lock:
            names, self._created = self._created, []
        self._migrated_template = None
        for name in names:
            self._drop(name)
        for drop in drops:
            drop.result()

    def _drop(self, name: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)} WITH (FORCE)")

    def _execute(self, statement: str) -> None:
        async def execute() -> None:
            # CREATE/DROP DATABASE cannot run in a transaction; asyncpg autocommits.
            connection = await asyncpg.connect(_libpq_dsn(self.server_url), timeout=10)
            try:
                await connection.execute(statement)
            finally:
                await connection.close()

        run_sync(execute)
