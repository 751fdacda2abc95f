"""The SQLAlchemy unit of work: one connection, one transaction."""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy.repositories import (
    SqlAccountRepository,
    SqlInvalidatedTokenRepository,
    SqlOtpChallengeRepository,
    SqlOutboxRepository,
    SqlSessionRepository,
    SqlTenantRepository,
)
from identity.application.ports import UnitOfWork
from identity.domain.errors import StorageUnavailableError

UNAVAILABLE = (sa_exc.TimeoutError, sa_exc.InterfaceError, sa_exc.OperationalError, OSError)


class SqlUnitOfWork(UnitOfWork):
    def __init__(self, engine: AsyncEngine, outbox_sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = outbox_sealer
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        try:
            connection = await self._engine.connect()
        except UNAVAILABLE as error:
            # Pool exhausted or database down: the edge answers 503.
            raise StorageUnavailableError(type(error).__name__) from error
        # The transaction begins with the first statement (SQLAlchemy autobegin).
        self._connection = connection
        self.tenants = SqlTenantRepository(connection)
        self.accounts = SqlAccountRepository(connection)
        self.challenges = SqlOtpChallengeRepository(connection)
        self.sessions = SqlSessionRepository(connection)
        self.invalidated_tokens = SqlInvalidatedTokenRepository(connection)
        self.outbox = SqlOutboxRepository(connection, self._sealer)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
        finally:
            await connection.close()

    async def commit(self) -> None:
        assert self._connection is not None, "commit outside 'async with'"
        await self._connection.commit()

    async def rollback(self) -> None:
        assert self._connection is not None, "rollback outside 'async with'"
        await self._connection.rollback()
