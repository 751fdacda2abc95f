"""The pool replaces a connection that died while idle, instead of failing a request."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import text

from identity.adapters.sqlalchemy import engine as engine_module


async def backend_pid(engine: object) -> int:
    async with engine.connect() as connection:  # type: ignore[attr-defined]
        return int((await connection.execute(text("select pg_backend_pid()"))).scalar_one())


async def test_an_idle_connection_killed_by_the_server_is_replaced(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_AFTER_SECONDS", 0.0)
    engine = engine_module.make_engine(migrated_postgres_url, pool_size=1)
    try:
        first = await backend_pid(engine)
        assert await backend_pid(engine) == first  # the pool reuses its one connection
        raw_url = migrated_postgres_url.replace("postgresql+asyncpg", "postgresql")
        killer = await asyncpg.connect(raw_url)
        try:
            await killer.execute("select pg_terminate_backend($1)", first)
        finally:
            await killer.close()
        assert await backend_pid(engine) != first
    finally:
        await engine.dispose()


async def test_a_recently_used_connection_is_not_pinged(
    migrated_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_AFTER_SECONDS", 3600.0)
    engine = engine_module.make_engine(migrated_postgres_url, pool_size=1)
    pings = 0
    dialect = engine.sync_engine.dialect
    original = dialect.do_ping

    def counting_ping(connection: object) -> bool:
        nonlocal pings
        pings += 1
        return bool(original(connection))

    monkeypatch.setattr(dialect, "do_ping", counting_ping)
    try:
        for _ in range(5):
            await backend_pid(engine)
        assert pings == 0
        monkeypatch.setattr(engine_module, "PING_IDLE_AFTER_SECONDS", 0.0)
        await backend_pid(engine)
        assert pings == 1
    finally:
        await engine.dispose()
