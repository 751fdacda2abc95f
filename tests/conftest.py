"""Fixtures for every test.

``sqlite_url`` (function)
    ``sqlite+aiosqlite:///<tmp_path>/identity.db``: a path where no database
    exists yet, private to the test.
``migrated_sqlite_url`` (function)
    The same kind of path, holding a database already at the migrations' head
    (a copy of one migrated once per session, so it costs a file copy).

``_reused_rsa_keys`` (function, automatic)
    RSA signing keys come from a pool made once per process: each test is
    handed distinct keys (the first, the second... it asks for), so a ring
    never holds one twice, but the next test gets the same ones again.
    Generating RSA-2048 costs ~100 ms and most tests start a fresh key ring.
    Ed25519 keys are made fresh (they cost nothing).

Tests under ``tests/integration/`` are marked ``integration`` automatically,
so ``pytest -m "not integration"`` runs only what needs no real services.
Postgres and Redis fixtures live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from identity.adapters import signing_keys
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


class _RsaKeyPool:
    """RSA keys made on first need and handed out again, in order, to each test."""

    def __init__(self) -> None:
        self._keys: list[signing_keys.PrivateKey] = []
        self._next = 0
        self._lock = threading.Lock()  # apps may make keys in worker threads

    def restart(self) -> None:
        with self._lock:
            self._next = 0

    def new_private_key(self, algorithm: signing_keys.Algorithm) -> signing_keys.PrivateKey:
        if algorithm != "RS256":
            return _make_private_key(algorithm)
        with self._lock:
            if self._next == len(self._keys):
                self._keys.append(_make_private_key(algorithm))
            key = self._keys[self._next]
            self._next += 1
            return key


_make_private_key = signing_keys._new_private_key
_RSA_KEYS = _RsaKeyPool()


@pytest.fixture(autouse=True)
def _reused_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    _RSA_KEYS.restart()
    monkeypatch.setattr(signing_keys, "_new_private_key", _RSA_KEYS.new_private_key)
