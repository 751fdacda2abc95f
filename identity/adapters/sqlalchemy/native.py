"""One-row reads outside any transaction, for per-request authentication reads.

On Postgres with asyncpg the statement, compiled once, goes straight to the
pooled driver connection (asyncpg prepares and caches it): no BEGIN, no
ROLLBACK, none of SQLAlchemy's per-execution work. Elsewhere it runs through
SQLAlchemy on an AUTOCOMMIT connection. ``SqlActiveSessionReader`` does the
same for its own statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Select

from identity.domain.errors import StorageUnavailableError


class OneRowRead:
    """``await read(params)`` -> the first row (attribute access) or None."""

    def __init__(
        self, engine: AsyncEngine, statement: Select[Any], *, datetimes: tuple[str, ...] = ()
    ) -> None:
        self._engine = engine
        self._statement = statement
        self._datetimes = datetimes
        self._native: tuple[str, list[str], dict[str, Any]] | None = None
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
            compiled = statement.compile(dialect=engine.dialect)
            assert compiled.positiontup is not None
            self._native = (compiled.string, list(compiled.positiontup), dict(compiled.params))

    async def __call__(self, params: Mapping[str, Any]) -> Any:
        async with self._engine.connect() as connection:
            if self._native is None:
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                return (await connection.execute(self._statement, dict(params))).first()
            sql, order, constants = self._native
            raw = await connection.get_raw_connection()
            values = [params[name] if name in params else constants[name] for name in order]
            try:
                record = await raw.driver_connection.fetchrow(sql, *values)  # type: ignore[union-attr]
            except (
                asyncpg.PostgresConnectionError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
                OSError,
            ) as error:
                # Outside SQLAlchemy nobody else notices a dead connection.
                await connection.invalidate()
                raise StorageUnavailableError(type(error).__name__) from error
        if record is None:
            return None
        row = SimpleNamespace(**dict(record))
        for name in self._datetimes:
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, value.astimezone(UTC))
        return row
