"""The in-memory mail outbox: messages in clear, the SQL outbox's claim, lease and marks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import UUID, uuid4

from identity.adapters.memory.store import _OutboxRow, _round_trip, _Table, _Transaction
from identity.application.ports import OutboxItem, OutboxRepository
from identity.domain.mail import EmailMessage


class MemoryOutboxRepository(OutboxRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, _OutboxRow] = _Table(transaction, "outbox", _OutboxRow)

    @_round_trip
    async def add(self, tenant_id: UUID, message: EmailMessage, now: datetime) -> None:
        row = _OutboxRow(
            id=uuid4(),
            tenant_id=tenant_id,
            message=message,
            address_key=message.to.casefold(),
            state="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        await self._t.lock(row.id)
        self._t.put(row.id, row)

    @_round_trip
    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        # A message being claimed at this moment still goes.
        return self._t.delete_where_unlocked(
            lambda row: row.tenant_id == tenant_id and row.address_key == email_key
        )

    @_round_trip
    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        def due(row: _OutboxRow) -> bool:
            return (
                row.state == "pending"
                and row.next_attempt_at <= now
                and (row.locked_until is None or row.locked_until < now)
            )

        candidates = sorted(
            (row for _, row in self._t.rows() if due(row)), key=lambda row: row.next_attempt_at
        )
        items: list[OutboxItem] = []
        for candidate in candidates:
            if len(items) >= limit:
                break
            # Several workers poll at once: each takes different rows (SKIP LOCKED).
            if not self._t.try_lock(candidate.id):
                continue
            row = self._t.get(candidate.id)
            if row is None or row.message is None or not due(row):
                continue
            row.locked_until = now + lease
            row.attempts += 1
            self._t.put(row.id, row)
            items.append(
                OutboxItem(
                    id=row.id, tenant_id=row.tenant_id, message=row.message, attempts=row.attempts
                )
            )
        return items

    @_round_trip
    async def mark_sent(self, item_id: UUID, now: datetime) -> None:
        def sent(row: _OutboxRow) -> None:
            row.state, row.sent_at, row.message, row.locked_until = "sent", now, None, None

        await self._change(item_id, sent)

    @_round_trip
    async def mark_failed(
        self, item_id: UUID, error: str, next_attempt_at: datetime | None
    ) -> None:
        def failed(row: _OutboxRow) -> None:
            row.last_error = error
            row.locked_until = None
            if next_attempt_at is None:
                row.state, row.message = "dead", None
            else:
                row.next_attempt_at = next_attempt_at

        await self._change(item_id, failed)

    @_round_trip
    async def pending_count(self) -> int:
        return sum(1 for _, row in self._t.rows() if row.state == "pending")

    async def _change(self, item_id: UUID, change: Callable[[_OutboxRow], None]) -> None:
        await self._t.lock(item_id)
        row = self._t.get(item_id)
        if row is not None:
            change(row)
            self._t.put(item_id, row)
