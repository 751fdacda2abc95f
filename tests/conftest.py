"""Fixtures for every test.

``sqlite_url`` (function)
    ``sqlite+aiosqlite:///<tmp_path>/identity.db``: a path where no database
    exists yet, private to the test.
``migrated_sqlite_url`` (function)
    The same kind of path, holding a database already at the migrations' head
    (a copy of one migrated once per session, so it costs a file copy).

Tests under ``tests/integration/`` are marked ``integration`` automatically,
so ``pytest -m "not integration"`` runs only what needs no real services.
Postgres and Redis fixtures live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from identity.adapters.sqlalchemy.migrate import upgrade

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def sqlite_url_for(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return sqlite_url_for(tmp_path / "identity.db")


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "identity.db"
    # Blocking, and runs its own event loop: fine here, no loop runs in a sync fixture.
    upgrade(sqlite_url_for(path))
    return path


@pytest.fixture
def migrated_sqlite_url(tmp_path: Path, _migrated_sqlite_template: Path) -> str:
    path = tmp_path / "identity.db"
    shutil.copyfile(_migrated_sqlite_template, path)
    return sqlite_url_for(path)
