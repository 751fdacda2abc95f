"""The in-memory pending external sign-ins."""

from __future__ import annotations

from datetime import datetime

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import OAuthStateRepository
from identity.domain.external_sign_in import PendingSignIn


class MemoryOAuthStateRepository(OAuthStateRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, PendingSignIn] = _Table(transaction, "oauth_states", PendingSignIn)

    @_round_trip
    async def add(self, pending: PendingSignIn) -> None:
        await self._t.lock(pending.key)
        if self._t.get(pending.key) is not None:
            raise MemoryIntegrityError("pending sign-in key exists")
        self._t.put(pending.key, pending)

    @_round_trip
    async def take(self, key: str) -> PendingSignIn | None:
        # Like DELETE ... RETURNING: concurrent takers wait, then find nothing.
        await self._t.lock(key)
        pending = self._t.get(key)
        if pending is not None:
            self._t.delete(key)
        return pending

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.is_expired(now))
