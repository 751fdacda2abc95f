"""Fixtures for tests against real Postgres and Redis.

Servers: ``IDENTITY_TEST_DATABASE_URL`` (a Postgres server on which the tests
may create and drop databases, e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432/postgres``) and
``IDENTITY_TEST_REDIS_URL`` (e.g. ``redis://127.0.0.1:6379/0``). When one is
unset and ``docker info`` succeeds, a testcontainer is started for the
session instead; when neither, every test that needs the service FAILS with
a message naming the variable to set.

``postgres_server_url`` (session)
    ``postgresql+asyncpg://`` URL of the server's ``postgres`` database. Do
    not create tables there; ask for a database below.
``postgres_databases`` (session)
    The ``tests.databases.PostgresDatabases`` factory behind the fixtures
    below: ``create()``, ``create(template=name)``, ``create_migrated()``.
    Every database it made is dropped at the end of the session.
``fresh_postgres_url`` (function)
    A brand-new empty database with a unique ``identity_test_*`` name.
``migrated_postgres_url`` (function)
    A new database at the migrations' head: a copy (``CREATE DATABASE ...
    TEMPLATE``) of one database migrated once per session.
``database_url`` (function, parametrized ``sqlite`` / ``postgres``)
    A migrated database of each kind, for tests that must pass on both.
``redis_url`` (session)
    URL of a reachable Redis. Shared: use your own key prefix.
``redis_key_prefix`` (function)
    ``identity:test:<random>:``; keys under it are deleted after the test.

Databases are dropped when their test ends (``WITH (FORCE)``, so a leaked
connection cannot keep one alive; on a worker thread, so the next test does not
wait for the checkpoint a drop makes) and again, for anything left, at session end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import asyncpg
import pytest
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from tests.databases import (
    POSTGRES_URL_VARIABLE,
    REDIS_URL_VARIABLE,
    PostgresDatabases,
    ServiceUnavailableError,
    start_postgres,
    start_redis,
)


def safe(url: str | None) -> str:
    return make_url(url).render_as_string(hide_password=True) if url else "?"


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with ExitStack() as stack:
        # pytest.fail is called outside the except blocks: a chained traceback
        # would only repeat the message.
        problem = url = None
        try:
            url = start_postgres(stack, dict(os.environ))
            PostgresDatabases(url).check_connection()
        except ServiceUnavailableError as error:
            problem = str(error)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            problem = (
                f"Postgres is not reachable at {safe(url)} ({error!r}); "
                f"check {POSTGRES_URL_VARIABLE}."
            )
        if problem is not None or url is None:
            pytest.fail(problem or "no Postgres", pytrace=False)
        yield url


@pytest.fixture(scope="session")
def postgres_databases(postgres_server_url: str) -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(postgres_server_url)
    yield databases
    databases.drop_all()


@pytest.fixture
def fresh_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create()
    yield url
    postgres_databases.drop(url)


@pytest.fixture
def migrated_postgres_url(postgres_databases: PostgresDatabases) -> Iterator[str]:
    url = postgres_databases.create_migrated()
    yield url
    postgres_databases.drop(url)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    name = "migrated_sqlite_url" if request.param == "sqlite" else "migrated_postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with ExitStack() as stack:
        problem = url = None
        try:
            url = start_redis(stack, dict(os.environ))
            with Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5) as client:
                client.ping()
        except ServiceUnavailableError as error:
            problem = str(error)
        except (RedisError, OSError) as error:
            problem = (
                f"Redis is not reachable at {safe(url)} ({error!r}); check {REDIS_URL_VARIABLE}."
            )
        if problem is not None or url is None:
            pytest.fail(problem or "no Redis", pytrace=False)
        yield url


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"identity:test:{uuid.uuid4().hex}:"
    yield prefix
    client = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
