"""The denylist of access tokens ended before their expiry, over SQLAlchemy Core."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import InvalidatedTokenRepository

_DENYLISTED = select(t.invalidated_tokens.c.jti).where(
    t.invalidated_tokens.c.jti == bindparam("jti"),
    t.invalidated_tokens.c.tenant_id == bindparam("tenant_id"),
)


class SqlInvalidatedTokenRepository(InvalidatedTokenRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, tenant_id: UUID, jti: str, expires_at: datetime, now: datetime) -> None:
        c = t.invalidated_tokens.c
        exists = await self._c.execute(select(c.jti).where(c.jti == jti))
        if exists.first() is not None:
            return
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(t.invalidated_tokens).values(
                        jti=jti, tenant_id=tenant_id, expires_at=expires_at, created_at=now
                    )
                )
        except IntegrityError:
            return  # a concurrent logout recorded it first

    async def contains(self, tenant_id: UUID, jti: str) -> bool:
        params = {"jti": jti, "tenant_id": tenant_id}
        return (await self._c.execute(_DENYLISTED, params)).first() is not None

    async def delete_expired(self, now: datetime) -> int:
        c = t.invalidated_tokens.c
        result = await self._c.execute(delete(t.invalidated_tokens).where(c.expires_at < now))
        return result.rowcount
