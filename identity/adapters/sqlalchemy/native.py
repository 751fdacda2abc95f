"""One-row reads outside any transaction, for per-request authentication reads, and
many-row reads on a unit of work's connection, for list pages.

On Postgres with asyncpg a one-row read, compiled once by SQLAlchemy, runs on
a small asyncpg pool of its own (``NativePool``): no BEGIN, no ROLLBACK, and
none of SQLAlchemy's per-checkout work (its pool, the connection wrapper and
the greenlet hop were a fifth of an ``/auth/me``). Elsewhere it runs through
SQLAlchemy on an AUTOCOMMIT connection. ``SqlActiveSessionReader`` (every
bearer request) is one of these.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select, Update

from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.domain.errors import StorageUnavailableError

# A SELECT, or a write with RETURNING.
RowStatement = Select[Any] | Update

_NATIVE_POOL = "_identity_native_pool"


class NativePool:
    """The asyncpg pool of an engine's one-row reads, opened on first use.

    It follows the engine's settings: as many connections as the engine's
    pool, the same wait for a free one and the same statement timeout. A
    connection idle for ``PING_IDLE_AFTER_SECONDS`` is closed rather than
    trusted (the engine pings such connections; here a new one is cheaper
    than a ping per checkout). Disposing the engine terminates the pool; the
    next read opens a new one.
    """

    def __init__(
        self, connect: Mapping[str, Any], *, size: int, timeout: float, statement_timeout: float,
        idle: float,
    ) -> None:  # fmt: skip
        self._connect = dict(connect)
        self._size = size
        self.timeout = timeout
        self._statement_timeout = statement_timeout
        self._idle = idle
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def pool(self) -> asyncpg.Pool:
        pool = self._pool
        if pool is not None:
            return pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    **self._connect,
                    min_size=0,
                    max_size=self._size,
                    timeout=self.timeout,
                    command_timeout=self._statement_timeout,
                    max_inactive_connection_lifetime=self._idle,
                    reset=_keep,
                )
            return self._pool

    def terminate(self) -> None:
        pool, self._pool, self._opening = self._pool, None, None
        if pool is not None:
            pool.terminate()


async def _keep(_connection: asyncpg.Connection) -> None:
    """Only single reads run on this pool: no session state to reset on release.

    asyncpg's default reset is one more round trip per read (``RESET ALL``,
    ``UNLISTEN *``, ...). A connection left inside a transaction, which a
    single statement cannot do, would still be rolled back by the pool.
    """


def attach_native_pool(
    engine: AsyncEngine, *, size: int, timeout: float, statement_timeout: float, idle: float
) -> None:
    """Gives a Postgres (asyncpg) engine its one-row-read pool, ended with the engine."""
    _args, connect = engine.dialect.create_connect_args(engine.url)
    native = NativePool(
        connect, size=size, timeout=timeout, statement_timeout=statement_timeout, idle=idle
    )
    setattr(engine.sync_engine, _NATIVE_POOL, native)

    @event.listens_for(engine.sync_engine, "engine_disposed")
    def on_dispose(_engine: Any) -> None:
        native.terminate()


def native_pool(engine: AsyncEngine) -> NativePool | None:
    return getattr(engine.sync_engine, _NATIVE_POOL, None)


class _Native:
    """A statement compiled once for asyncpg: its SQL, and positional values from params."""

    def __init__(self, statement: RowStatement, dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        assert compiled.positiontup is not None
        self.sql = compiled.string
        self._order = list(compiled.positiontup)
        self._constants = dict(compiled.params)

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self._constants[name] for name in self._order]


class OneRowRead:
    """``await read(params)`` -> the first row (attribute access) or None.

    Any one statement that returns rows: a SELECT, or a write with RETURNING
    (committed on its own: no transaction is open around it)."""

    def __init__(
        self, engine: AsyncEngine, statement: RowStatement, *, datetimes: tuple[str, ...] = ()
    ) -> None:
        self._engine = engine
        self._statement = statement
        self._datetimes = datetimes
        self._native: _Native | None = None
        self._pool = native_pool(engine)
        if self._pool is not None:
            self._native = _Native(statement, engine.dialect)

    async def __call__(self, params: Mapping[str, Any]) -> Any:
        if self._native is None or self._pool is None:
            async with self._engine.connect() as connection:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return (await connection.execute(self._statement, dict(params))).first()
        native = self._native
        try:
            pool = await self._pool.pool()
            async with pool.acquire(timeout=self._pool.timeout) as connection:
                record = await connection.fetchrow(native.sql, *native.values(params))
        except Exception as error:
            if is_unavailable(error):
                raise StorageUnavailableError(type(error).__name__) from error
            raise
        return None if record is None else _row(record, self._datetimes)


class RowsRead:
    """``await read(params)`` -> every row (attribute access), like ``OneRowRead``:
    outside any transaction, on the engine's one-row-read pool on Postgres.

    ``json_columns`` are decoded on the native path (asyncpg answers ``json`` as text;
    SQLAlchemy's JSON type decodes them elsewhere).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        statement: Select[Any],
        *,
        json_columns: tuple[str, ...] = (),
        datetimes: tuple[str, ...] = (),
    ) -> None:
        self._engine = engine
        self._statement = statement
        self._json = json_columns
        self._datetimes = datetimes
        self._pool = native_pool(engine)
        self._native = None if self._pool is None else _Native(statement, engine.dialect)

    async def __call__(self, params: Mapping[str, Any]) -> list[Any]:
        if self._native is None or self._pool is None:
            async with self._engine.connect() as connection:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return list(await connection.execute(self._statement, dict(params)))
        native = self._native
        try:
            pool = await self._pool.pool()
            async with pool.acquire(timeout=self._pool.timeout) as connection:
                records = await connection.fetch(native.sql, *native.values(params))
        except Exception as error:
            if is_unavailable(error):
                raise StorageUnavailableError(type(error).__name__) from error
            raise
        rows = [_row(record, self._datetimes) for record in records]
        for row in rows:
            for name in self._json:
                value = getattr(row, name)
                if isinstance(value, str):
                    setattr(row, name, json.loads(value))
        return rows


async def _unavailable_or_raise(connection: AsyncConnection, error: Exception) -> None:
    """A lost connection becomes the storage error every caller knows (a 503)."""
    if not is_unavailable(error):
        return
    # Outside SQLAlchemy nobody else notices a dead connection: drop it from the pool.
    await connection.invalidate()
    raise StorageUnavailableError(type(error).__name__) from error


def _row(record: Any, datetimes: tuple[str, ...]) -> SimpleNamespace:
    row = SimpleNamespace(**dict(record))
    for name in datetimes:
        value = getattr(row, name)
        if value is not None:
            setattr(row, name, value.astimezone(UTC))
    return row


class ManyRowsRead:
    """``await read(connection, params)`` -> every row (attribute access).

    On the unit of work's own connection, so it sees that transaction when one
    is open. On Postgres with asyncpg the statement, compiled once, goes to the
    driver connection: a page of 50 accounts skipped SQLAlchemy's per-row
    result processing, which was most of the page's cost.
    """

    def __init__(self, statement: Select[Any], *, datetimes: tuple[str, ...] = ()) -> None:
        self._statement = statement
        self._datetimes = datetimes
        self._native: _Native | None = None

    async def __call__(self, connection: AsyncConnection, params: Mapping[str, Any]) -> list[Any]:
        if connection.dialect.driver != "asyncpg":
            return list(await connection.execute(self._statement, dict(params)))
        if self._native is None:
            self._native = _Native(self._statement, connection.dialect)
        native = self._native
        raw = await connection.get_raw_connection()
        try:
            records = await raw.driver_connection.fetch(  # type: ignore[union-attr]
                native.sql, *native.values(params)
            )
        except Exception as error:
            await _unavailable_or_raise(connection, error)
            raise
        return [_row(record, self._datetimes) for record in records]
