"""One-row reads outside any transaction, for per-request authentication reads, and
many-row reads on a unit of work's connection, for list pages.

On Postgres with asyncpg the statement, compiled once, goes straight to the
pooled driver connection (asyncpg prepares and caches it): no BEGIN, no
ROLLBACK, none of SQLAlchemy's per-execution work. Elsewhere it runs through
SQLAlchemy on an AUTOCOMMIT connection. ``SqlActiveSessionReader`` (every
bearer request) is one of these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from types import SimpleNamespace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Select

from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.domain.errors import StorageUnavailableError


class _Native:
    """A statement compiled once for asyncpg: its SQL, and positional values from params."""

    def __init__(self, statement: Select[Any], dialect: Any) -> None:
        compiled = statement.compile(dialect=dialect)
        assert compiled.positiontup is not None
        self.sql = compiled.string
        self._order = list(compiled.positiontup)
        self._constants = dict(compiled.params)

    def values(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self._constants[name] for name in self._order]


class OneRowRead:
    """``await read(params)`` -> the first row (attribute access) or None."""

    def __init__(
        self, engine: AsyncEngine, statement: Select[Any], *, datetimes: tuple[str, ...] = ()
    ) -> None:
        self._engine = engine
        self._statement = statement
        self._datetimes = datetimes
        self._native: _Native | None = None
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
            self._native = _Native(statement, engine.dialect)

    async def __call__(self, params: Mapping[str, Any]) -> Any:
        async with self._engine.connect() as connection:
            if self._native is None:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return (await connection.execute(self._statement, dict(params))).first()
            native = self._native
            raw = await connection.get_raw_connection()
            try:
                record = await raw.driver_connection.fetchrow(  # type: ignore[union-attr]
                    native.sql, *native.values(params)
                )
            except Exception as error:
                await _unavailable_or_raise(connection, error)
                raise
        return None if record is None else _row(record, self._datetimes)


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
