"""The in-memory code request queue."""

from __future__ import annotations

from uuid import UUID

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import CodeRequestQueue
from identity.domain.code_requests import CodeRequest


class MemoryCodeRequestQueue(CodeRequestQueue):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, CodeRequest] = _Table(transaction, "code_requests", CodeRequest)

    @_round_trip
    async def add(self, request: CodeRequest) -> None:
        await self._t.lock(request.id)
        self._t.put(request.id, request)

    @_round_trip
    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        # A request a worker is taking at this moment still goes.
        return self._t.delete_where_unlocked(
            lambda request: request.tenant_id == tenant_id and request.email.key == email_key
        )

    @_round_trip
    async def take_next(self) -> CodeRequest | None:
        for _, request in sorted(self._t.rows(), key=lambda item: item[1].requested_at):
            # Several workers at once: each takes a different request (SKIP LOCKED).
            if not self._t.try_lock(request.id) or self._t.get(request.id) is None:
                continue
            self._t.delete(request.id)
            return request
        return None
