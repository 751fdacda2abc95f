"""In-memory webhooks and their delivery queue (secrets kept in clear: nothing leaves
the process), with the SQL queue's claim, lease and conditional-record semantics."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from identity.adapters.memory.events import deliveries_table, webhooks_table
from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import (
    DeliveryOutcome,
    DueDelivery,
    Position,
    WebhookDeliveryQueue,
    WebhookRepository,
)
from identity.domain.events import SecurityEvent
from identity.domain.tenants import Tenant
from identity.domain.webhooks import DeliveryStatus, Webhook, WebhookDelivery


class MemoryWebhookRepository(WebhookRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t = webhooks_table(transaction)
        self._deliveries = deliveries_table(transaction)

    @_round_trip
    async def add(self, webhook: Webhook) -> None:
        await self._t.lock(webhook.id)
        if self._t.get(webhook.id) is not None:
            raise MemoryIntegrityError(f"webhook {webhook.id} exists")
        self._t.put(webhook.id, webhook)

    @_round_trip
    async def get(self, tenant_id: UUID, webhook_id: UUID) -> Webhook | None:
        webhook = self._t.get(webhook_id)
        return webhook if webhook is not None and webhook.tenant_id == tenant_id else None

    @_round_trip
    async def list_for_tenant(self, tenant_id: UUID) -> list[Webhook]:
        found = [hook for _, hook in self._t.rows() if hook.tenant_id == tenant_id]
        return sorted(found, key=lambda hook: (hook.created_at, hook.id))

    @_round_trip
    async def update(self, webhook: Webhook) -> None:
        await self._t.lock(webhook.id)
        if self._t.get(webhook.id) is not None:
            self._t.put(webhook.id, webhook)

    @_round_trip
    async def delete(self, tenant_id: UUID, webhook_id: UUID) -> bool:
        await self._t.lock(webhook_id)
        webhook = self._t.get(webhook_id)
        if webhook is None or webhook.tenant_id != tenant_id:
            return False
        await self._deliveries.delete_where(lambda delivery: delivery.webhook_id == webhook_id)
        self._t.delete(webhook_id)
        return True


class MemoryWebhookDeliveryQueue(WebhookDeliveryQueue):
    def __init__(self, transaction: _Transaction) -> None:
        self._t = deliveries_table(transaction)
        self._webhooks = webhooks_table(transaction)
        self._events: _Table[UUID, SecurityEvent] = _Table(
            transaction, "security_events", SecurityEvent
        )
        self._tenants: _Table[UUID, Tenant] = _Table(transaction, "tenants", Tenant)

    @_round_trip
    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
        def due(row: WebhookDelivery) -> bool:
            return (
                row.status is DeliveryStatus.PENDING
                and row.next_attempt_at is not None
                and row.next_attempt_at <= now
                and (row.locked_until is None or row.locked_until < now)
            )

        candidates = sorted(
            (row for _, row in self._t.rows() if due(row)),
            key=lambda row: row.next_attempt_at or now,
        )
        claimed: list[DueDelivery] = []
        for candidate in candidates:
            if len(claimed) == limit:
                break
            # SKIP LOCKED: a row another worker is claiming is passed over.
            if not self._t.try_lock(candidate.id):
                continue
            row = self._t.get(candidate.id)
            if row is None or not due(row):
                continue
            row.locked_until = now + lease
            row.attempts += 1
            self._t.put(row.id, row)
            webhook = self._webhooks.get(row.webhook_id)
            event = self._events.get(row.event_id)
            tenant = self._tenants.get(row.tenant_id)
            if webhook is None or event is None or tenant is None:
                continue
            claimed.append(DueDelivery(row, webhook, event, tenant.slug))
        return claimed

    @_round_trip
    async def record(self, outcomes: list[DeliveryOutcome]) -> None:
        for outcome in outcomes:
            await self._t.lock(outcome.delivery_id)
            row = self._t.get(outcome.delivery_id)
            if row is None or row.attempts != outcome.attempt:
                continue
            row.locked_until = None
            row.last_status_code = outcome.status_code
            row.last_error = outcome.error
            if outcome.error is None:
                row.status = DeliveryStatus.DELIVERED
                row.delivered_at = outcome.at
                row.next_attempt_at = None
            elif outcome.retry_at is None:
                row.status = DeliveryStatus.FAILED
                row.next_attempt_at = None
            else:
                row.next_attempt_at = outcome.retry_at
            self._t.put(row.id, row)

    @_round_trip
    async def list_for_webhook(
        self, webhook_id: UUID, *, limit: int, before: Position | None = None
    ) -> list[WebhookDelivery]:
        found = [
            row
            for _, row in self._t.rows()
            if row.webhook_id == webhook_id
            and (before is None or (row.created_at, row.id) < (before.created_at, before.id))
        ]
        found.sort(key=lambda row: (row.created_at, row.id), reverse=True)
        return found[:limit]

    @_round_trip
    async def pending_count(self) -> int:
        return sum(1 for _, row in self._t.rows() if row.status is DeliveryStatus.PENDING)
