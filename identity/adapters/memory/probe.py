"""``/health`` over the in-memory storage."""

from __future__ import annotations

from identity.adapters.memory import MemoryStore


class MemoryStoreProbe:
    """Answers as ``DatabaseProbe`` does: the store is up unless marked unavailable."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def ok(self) -> bool:
        return self._store.available
