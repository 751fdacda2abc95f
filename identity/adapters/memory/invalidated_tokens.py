"""The in-memory denylist of access tokens."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import InvalidatedTokenRepository


@attrs.define
class _InvalidatedToken:
    tenant_id: UUID
    expires_at: datetime
    created_at: datetime


class MemoryInvalidatedTokenRepository(InvalidatedTokenRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, _InvalidatedToken] = _Table(
            transaction, "invalidated_tokens", _InvalidatedToken
        )

    @_round_trip
    async def add(self, tenant_id: UUID, jti: str, expires_at: datetime, now: datetime) -> None:
        if self._t.get(jti) is not None:
            return
        await self._t.lock(jti)
        if self._t.get(jti) is not None:
            return  # a concurrent logout recorded it first
        self._t.put(jti, _InvalidatedToken(tenant_id, expires_at, now))

    @_round_trip
    async def contains(self, tenant_id: UUID, jti: str) -> bool:
        entry = self._t.get(jti)
        return entry is not None and entry.tenant_id == tenant_id

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.expires_at < now)
