"""Engine construction: a sized pool with pre-ping and a bounded wait."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(
    url: str, *, pool_size: int = 10, pool_timeout: float = 5.0, echo: bool = False
) -> AsyncEngine:
    """An engine for Postgres (asyncpg) or SQLite (aiosqlite).

    ``pool_timeout`` bounds the wait for a free connection: past it the unit of
    work raises ``StorageUnavailableError`` (a 503), never a hang.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=True,
            connect_args={"timeout": pool_timeout},
        )
        _serialise_sqlite_transactions(engine)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max(2, pool_size // 2),
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": pool_timeout, "command_timeout": 30},
    )


def _serialise_sqlite_transactions(engine: AsyncEngine) -> None:
    """SQLite: every transaction takes the write lock up front (BEGIN IMMEDIATE).

    pysqlite defers BEGIN, so a read-then-write transaction can fail to upgrade
    its lock under concurrency; the embedded default trades parallel writes
    for correctness. WAL keeps readers of other connections unblocked.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
