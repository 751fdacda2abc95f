"""The in-memory security event store, with the webhook fan-out of the SQL one."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import EventRepository, Position
from identity.domain.events import EventType, SecurityEvent
from identity.domain.webhooks import DeliveryStatus, Webhook, WebhookDelivery


def webhooks_table(transaction: _Transaction) -> _Table[UUID, Webhook]:
    return _Table(transaction, "webhooks", Webhook)


def deliveries_table(transaction: _Transaction) -> _Table[UUID, WebhookDelivery]:
    return _Table(transaction, "webhook_deliveries", WebhookDelivery)


class MemoryEventRepository(EventRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, SecurityEvent] = _Table(transaction, "security_events", SecurityEvent)
        self._webhooks = webhooks_table(transaction)
        self._deliveries = deliveries_table(transaction)

    @_round_trip
    async def add(self, event: SecurityEvent) -> None:
        await self._t.lock(event.id)
        if self._t.get(event.id) is not None:
            raise MemoryIntegrityError(f"event {event.id} exists")
        self._t.put(event.id, event)
        for _, webhook in self._webhooks.rows():
            if webhook.tenant_id == event.tenant_id and webhook.subscribes(event.type):
                delivery = WebhookDelivery(
                    id=uuid.uuid4(),
                    tenant_id=event.tenant_id,
                    webhook_id=webhook.id,
                    event_id=event.id,
                    event_type=event.type,
                    status=DeliveryStatus.PENDING,
                    attempts=0,
                    created_at=event.occurred_at,
                    next_attempt_at=event.occurred_at,
                )
                await self._deliveries.lock(delivery.id)
                self._deliveries.put(delivery.id, delivery)

    @_round_trip
    async def list(
        self,
        tenant_id: UUID,
        *,
        limit: int,
        user_id: UUID | None = None,
        type: EventType | None = None,
        before: Position | None = None,
    ) -> list[SecurityEvent]:
        found = [
            event
            for _, event in self._t.rows()
            if event.tenant_id == tenant_id
            and (user_id is None or event.user_id == user_id)
            and (type is None or event.type is type)
            and (before is None or (event.occurred_at, event.id) < (before.created_at, before.id))
        ]
        found.sort(key=lambda event: (event.occurred_at, event.id), reverse=True)
        return found[:limit]

    @_round_trip
    async def delete_older_than(self, cutoff: datetime) -> int:
        old = {event.id for _, event in self._t.rows() if event.occurred_at < cutoff}
        await self._deliveries.delete_where(lambda delivery: delivery.event_id in old)
        return await self._t.delete_where(lambda event: event.id in old)
