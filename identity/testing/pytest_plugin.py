"""The pytest plugin of ``identity.testing`` (entry point ``pytest11``: loaded by pytest
wherever identity is installed).

Fixtures (synchronous, so they serve ``def`` and ``async def`` tests alike):

``identity_server``
    A running ``SyncIdentityTestServer``, one per test. Storage from
    ``--identity-storage`` (``memory`` by default, ``sqlite``, ``postgres``,
    ``testcontainers``) and ``--identity-database-url`` (Postgres; given alone,
    it implies ``postgres``). Settings per test with
    ``@pytest.mark.identity_settings(ACCESS_TOKEN_TTL="1m")``.
``identity_user``
    A verified user on that server with a live session: ``.id``, ``.email``,
    ``.password``, ``.access_token``, ``.refresh_token``.

Only pytest is imported until a fixture is used, so the plugin costs nothing
to suites that never ask for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

import pytest

if TYPE_CHECKING:
    from identity.testing.server import SignedInUser, Storage
    from identity.testing.sync import SyncIdentityTestServer

STORAGE_OPTION = "--identity-storage"
DATABASE_URL_OPTION = "--identity-database-url"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("identity", "identity test server (identity.testing)")
    group.addoption(
        STORAGE_OPTION,
        choices=("memory", "sqlite", "postgres", "testcontainers"),
        default=None,
        help="storage of the identity_server fixture (default: memory, or postgres when "
        f"{DATABASE_URL_OPTION} is given)",
    )
    group.addoption(
        DATABASE_URL_OPTION,
        default=None,
        metavar="URL",
        help="postgresql+asyncpg:// URL of the database identity_server uses "
        "(migrated by it; its data is kept)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "identity_settings(**settings): IDENTITY_* settings (without the prefix) of the "
        "identity_server fixture for this test",
    )


@pytest.fixture
def identity_server(request: pytest.FixtureRequest) -> Iterator[SyncIdentityTestServer]:
    """A running identity test server for this test (see the module docstring)."""
    from identity.testing.server import IdentityTestServer

    database_url = request.config.getoption(DATABASE_URL_OPTION)
    storage = request.config.getoption(STORAGE_OPTION) or ("postgres" if database_url else "memory")
    settings: dict[str, object] = {}
    for marker in reversed(list(request.node.iter_markers("identity_settings"))):
        settings.update(marker.kwargs)  # the marker nearest the test wins
    server = IdentityTestServer(
        cast("Storage", storage),
        database_url=database_url if storage == "postgres" else None,
        settings=settings,
    )
    with server.sync() as running:
        yield running


@pytest.fixture
def identity_user(identity_server: SyncIdentityTestServer) -> SignedInUser:
    """A verified user on ``identity_server``, signed in with a password."""
    return identity_server.sign_in()
