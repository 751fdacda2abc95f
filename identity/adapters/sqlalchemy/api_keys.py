"""The API key repository over SQLAlchemy Core."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.native import OneRowRead
from identity.application.ports import ApiKeyReader, ApiKeyRepository, Position
from identity.domain.api_keys import ApiKey, Scope

_KEYS = t.api_keys


def _to_entity(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        scopes=frozenset(Scope(name) for name in row.scopes.split()),
        secret_digest=row.secret_digest,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


_KEY_BY_ID = select(_KEYS).where(_KEYS.c.id == bindparam("key_id"))


class SqlApiKeyReader(ApiKeyReader):
    """One statement, one round trip, no transaction: it runs on every admin request."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._read = OneRowRead(engine, _KEY_BY_ID, datetimes=("created_at", "revoked_at"))

    async def get(self, key_id: UUID) -> ApiKey | None:
        row = await self._read({"key_id": key_id})
        return _to_entity(row) if row is not None else None


class SqlApiKeyRepository(ApiKeyRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def get(self, key_id: UUID) -> ApiKey | None:
        row = (await self._c.execute(select(_KEYS).where(_KEYS.c.id == key_id))).first()
        return _to_entity(row) if row else None

    async def list_for_tenant(self, tenant_id: UUID) -> list[ApiKey]:
        rows = await self._c.execute(
            select(_KEYS)
            .where(_KEYS.c.tenant_id == tenant_id)
            .order_by(_KEYS.c.created_at, _KEYS.c.id)
        )
        return [_to_entity(row) for row in rows]

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[ApiKey]:
        c = _KEYS.c
        query = select(_KEYS).where(c.tenant_id == tenant_id)
        if after is not None:
            query = query.where(tuple_(c.created_at, c.id) > tuple_(after.created_at, after.id))
        rows = await self._c.execute(query.order_by(c.created_at, c.id).limit(limit))
        return [_to_entity(row) for row in rows]

    async def add(self, key: ApiKey) -> None:
        await self._c.execute(
            insert(_KEYS).values(
                id=key.id,
                tenant_id=key.tenant_id,
                name=key.name,
                scopes=" ".join(sorted(key.scopes)),
                secret_digest=key.secret_digest,
                created_at=key.created_at,
                revoked_at=key.revoked_at,
            )
        )

    async def update(self, key: ApiKey) -> None:
        await self._c.execute(
            update(_KEYS)
            .where(_KEYS.c.id == key.id)
            .values(name=key.name, revoked_at=key.revoked_at)
        )
