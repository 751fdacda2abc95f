"""The in-memory API key repository."""

from __future__ import annotations

from uuid import UUID

from identity.adapters.memory.store import (
    MemoryIntegrityError,
    MemoryStore,
    _round_trip,
    _Table,
    _Transaction,
)
from identity.application.ports import ApiKeyReader, ApiKeyRepository, Position
from identity.domain.api_keys import ApiKey


class MemoryApiKeyRepository(ApiKeyRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, ApiKey] = _Table(transaction, "api_keys", ApiKey)

    @_round_trip
    async def get(self, key_id: UUID) -> ApiKey | None:
        return self._t.get(key_id)

    @_round_trip
    async def list_for_tenant(self, tenant_id: UUID) -> list[ApiKey]:
        keys = [key for _, key in self._t.rows() if key.tenant_id == tenant_id]
        return sorted(keys, key=lambda key: (key.created_at, key.id))

    @_round_trip
    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[ApiKey]:
        keys = [
            key
            for _, key in self._t.rows()
            if key.tenant_id == tenant_id
            and (after is None or (key.created_at, key.id) > (after.created_at, after.id))
        ]
        return sorted(keys, key=lambda key: (key.created_at, key.id))[:limit]

    @_round_trip
    async def add(self, key: ApiKey) -> None:
        await self._t.lock(key.id)
        if self._t.get(key.id) is not None:
            raise MemoryIntegrityError(f"api key {key.id} exists")
        self._t.put(key.id, key)

    @_round_trip
    async def update(self, key: ApiKey) -> None:
        await self._t.lock(key.id)
        self._t.put(key.id, key)


class MemoryApiKeyReader(ApiKeyReader):
    """The key read of ``AuthenticateApiKey`` over a ``MemoryStore``: committed state only."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def get(self, key_id: UUID) -> ApiKey | None:
        transaction = _Transaction(self._store)
        try:
            return await MemoryApiKeyRepository(transaction).get(key_id)
        finally:
            transaction.end(keep=False)
