"""Engine construction: a sized pool with pre-ping and a bounded wait."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.adapters.sqlalchemy.native import attach_native_pool


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    pool_timeout: float = 5.0,
    statement_timeout: float = 30.0,
    echo: bool = False,
) -> AsyncEngine:
    """An engine for Postgres (asyncpg) or SQLite (aiosqlite).

    Connections idle for a few seconds are pinged before use (see
    ``_pre_ping_idle_connections``).

    ``pool_timeout`` bounds the wait for a free connection: past it the unit of
    work raises ``StorageUnavailableError`` (a 503), never a hang.
    ``statement_timeout`` (Postgres) bounds each statement on the client side,
    so a server that stops answering without closing connections is a 503 too.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            echo=echo,
            hide_parameters=True,  # error messages must not carry emails or hashes
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=pool_timeout,
            pool_pre_ping=True,
            connect_args={"timeout": pool_timeout},
        )
        _serialise_sqlite_transactions(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        pool_size=pool_size,
        # No overflow: overflow connections are closed on return and reopened
        # on the next burst, paying a connect per request under steady load.
        max_overflow=0,
        pool_timeout=pool_timeout,
        pool_recycle=1800,
        connect_args={"timeout": pool_timeout, "command_timeout": statement_timeout},
    )
    _pre_ping_idle_connections(engine)
    attach_native_pool(
        engine,
        size=pool_size,
        timeout=pool_timeout,
        statement_timeout=statement_timeout,
        idle=PING_IDLE_AFTER_SECONDS,
    )
    return engine


PING_IDLE_AFTER_SECONDS = 5.0


def _pre_ping_idle_connections(engine: AsyncEngine) -> None:
    """Pre-ping a pooled connection at checkout when it sat idle for a while.

    SQLAlchemy's ``pool_pre_ping`` costs three round trips on asyncpg (BEGIN,
    ping, ROLLBACK) on every checkout, more than a whole ``/auth/me``. A
    connection used moments ago is known good; one that idled may have been
    dropped by a restart or a proxy, so it is pinged and replaced if dead.
    A failure on a busy connection still surfaces as a 503 and SQLAlchemy
    discards that connection.
    """
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_IDLE_AFTER_SECONDS:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out another.
            raise exc.DisconnectionError("stale pooled connection") from error


def _serialise_sqlite_transactions(engine: AsyncEngine) -> None:
    """SQLite: every transaction takes the write lock up front (BEGIN IMMEDIATE).

    pysqlite defers BEGIN, so a read-then-write transaction can fail to upgrade
    its lock under concurrency; the embedded default trades parallel
    transactions for correctness. Single reads on an AUTOCOMMIT connection
    (``SqlActiveSessionReader``) begin nothing and, with WAL, are not blocked
    by an open transaction.
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
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        connection.exec_driver_sql("BEGIN IMMEDIATE")
