"""Webhooks and their delivery queue over SQLAlchemy Core (the outbox's design: leases,
``SKIP LOCKED``, conditional marks)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.events import _to_entity as _event_entity
from identity.adapters.sqlalchemy.types import UtcDateTime
from identity.application.ports import (
    DeliveryOutcome,
    DueDelivery,
    Position,
    WebhookDeliveryQueue,
    WebhookRepository,
)
from identity.domain.events import EventType
from identity.domain.webhooks import DeliveryStatus, Webhook, WebhookDelivery

_W = t.webhooks
_D = t.webhook_deliveries
_E = t.security_events


def event_types_column(types: frozenset[EventType]) -> str:
    # A space at each end: ``LIKE '% type %'`` then matches whole names only.
    return " " + " ".join(sorted(types)) + " "


class SqlWebhookRepository(WebhookRepository):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    def _to_entity(self, row: Any) -> Webhook:
        return webhook_entity(row, self._sealer)

    async def add(self, webhook: Webhook) -> None:
        await self._c.execute(insert(_W).values(**self._values(webhook), id=webhook.id))

    async def get(self, tenant_id: UUID, webhook_id: UUID) -> Webhook | None:
        row = (
            await self._c.execute(
                select(_W).where(_W.c.tenant_id == tenant_id, _W.c.id == webhook_id)
            )
        ).first()
        return self._to_entity(row) if row else None

    async def list_for_tenant(self, tenant_id: UUID) -> list[Webhook]:
        rows = await self._c.execute(
            select(_W).where(_W.c.tenant_id == tenant_id).order_by(_W.c.created_at, _W.c.id)
        )
        return [self._to_entity(row) for row in rows]

    async def update(self, webhook: Webhook) -> None:
        await self._c.execute(
            update(_W)
            .where(_W.c.id == webhook.id, _W.c.tenant_id == webhook.tenant_id)
            .values(**self._values(webhook))
        )

    async def delete(self, tenant_id: UUID, webhook_id: UUID) -> bool:
        found = _W.c.tenant_id == tenant_id, _W.c.id == webhook_id
        if (await self._c.execute(select(_W.c.id).where(*found))).first() is None:
            return False
        await self._c.execute(delete(_D).where(_D.c.webhook_id == webhook_id))
        await self._c.execute(delete(_W).where(*found))
        return True

    def _values(self, webhook: Webhook) -> dict[str, Any]:
        previous = webhook.previous_secret
        return {
            "tenant_id": webhook.tenant_id,
            "url": webhook.url,
            "event_types": event_types_column(webhook.event_types),
            "secret": self._sealer.seal(webhook.secret.encode()),
            "previous_secret": self._sealer.seal(previous.encode()) if previous else None,
            "previous_secret_expires_at": webhook.previous_secret_expires_at,
            "created_at": webhook.created_at,
        }


def webhook_entity(row: Any, sealer: Sealer) -> Webhook:
    previous = row.previous_secret
    return Webhook(
        id=row.id,
        tenant_id=row.tenant_id,
        url=row.url,
        event_types=frozenset(EventType(name) for name in row.event_types.split()),
        secret=sealer.unseal(row.secret).decode(),
        created_at=row.created_at,
        previous_secret=sealer.unseal(previous).decode() if previous else None,
        previous_secret_expires_at=row.previous_secret_expires_at,
    )


def _delivery(row: Any) -> WebhookDelivery:
    return WebhookDelivery(
        id=row.id,
        tenant_id=row.tenant_id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event_type=EventType(row.event_type),
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        locked_until=row.locked_until,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )


_RECORD = (
    update(_D)
    .where(_D.c.id == bindparam("b_id"), _D.c.attempts == bindparam("b_attempt"))
    .values(
        status=bindparam("b_status"),
        last_status_code=bindparam("b_status_code"),
        last_error=bindparam("b_error"),
        next_attempt_at=bindparam("b_next", type_=UtcDateTime()),
        delivered_at=bindparam("b_delivered_at", type_=UtcDateTime()),
        locked_until=None,
    )
)


class SqlWebhookDeliveryQueue(WebhookDeliveryQueue):
    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[DueDelivery]:
        c = _D.c
        due = (
            select(c.id)
            .where(
                c.status == DeliveryStatus.PENDING.value,
                c.next_attempt_at <= now,
                or_(c.locked_until.is_(None), c.locked_until < now),
            )
            .order_by(c.next_attempt_at)
            .limit(limit)
        )
        if self._c.dialect.name == "postgresql":
            # Several server processes poll at once: each takes different rows.
            due = due.with_for_update(skip_locked=True)
        ids = [row.id for row in await self._c.execute(due)]
        if not ids:
            return []
        await self._c.execute(
            update(_D)
            .where(c.id.in_(ids))
            .values(locked_until=now + lease, attempts=c.attempts + 1)
        )
        rows = await self._c.execute(
            select(
                _D,
                _W.c.url,
                _W.c.event_types,
                _W.c.secret,
                _W.c.previous_secret,
                _W.c.previous_secret_expires_at,
                _W.c.created_at.label("webhook_created_at"),
                _E.c.type,
                _E.c.occurred_at,
                _E.c.user_id,
                _E.c.session_id,
                _E.c.ip,
                _E.c.user_agent,
                _E.c.data,
                t.tenants.c.slug,
            )
            .join(_W, _W.c.id == c.webhook_id)
            .join(_E, _E.c.id == c.event_id)
            .join(t.tenants, t.tenants.c.id == c.tenant_id)
            .where(c.id.in_(ids))
        )
        claimed = []
        unreadable = []
        for row in rows:
            delivery = _delivery(row)
            try:
                webhook = webhook_entity(
                    _Row(
                        id=row.webhook_id,
                        tenant_id=row.tenant_id,
                        url=row.url,
                        event_types=row.event_types,
                        secret=row.secret,
                        previous_secret=row.previous_secret,
                        previous_secret_expires_at=row.previous_secret_expires_at,
                        created_at=row.webhook_created_at,
                    ),
                    self._sealer,
                )
            except UnsealError:
                # Sealed under another master secret: give it up, keep the rest moving.
                unreadable.append(row.id)
                continue
            event = _event_entity(
                _Row(
                    id=row.event_id,
                    type=row.type,
                    tenant_id=row.tenant_id,
                    occurred_at=row.occurred_at,
                    user_id=row.user_id,
                    session_id=row.session_id,
                    ip=row.ip,
                    user_agent=row.user_agent,
                    data=row.data,
                )
            )
            claimed.append(DueDelivery(delivery, webhook, event, row.slug))
        if unreadable:
            await self._c.execute(
                update(_D)
                .where(c.id.in_(unreadable))
                .values(
                    status=DeliveryStatus.FAILED.value,
                    locked_until=None,
                    next_attempt_at=None,
                    last_error="the webhook's secret cannot be unsealed with this secret key",
                )
            )
        return claimed

    async def record(self, outcomes: list[DeliveryOutcome]) -> None:
        if not outcomes:
            return
        await self._c.execute(_RECORD, [_record_params(outcome) for outcome in outcomes])

    async def list_for_webhook(
        self, webhook_id: UUID, *, limit: int, before: Position | None = None
    ) -> list[WebhookDelivery]:
        query = select(_D).where(_D.c.webhook_id == webhook_id)
        if before is not None:
            moment, delivery_id = before.created_at, before.id
            query = query.where(
                or_(
                    _D.c.created_at < moment,
                    and_(_D.c.created_at == moment, _D.c.id < delivery_id),
                )
            )
        query = query.order_by(_D.c.created_at.desc(), _D.c.id.desc()).limit(limit)
        return [_delivery(row) for row in await self._c.execute(query)]

    async def pending_count(self) -> int:
        query = select(func.count()).where(_D.c.status == DeliveryStatus.PENDING.value)
        return int((await self._c.execute(query)).scalar_one())


class _Row:
    """Attribute access over keyword values, for the shared row-to-entity functions."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def _record_params(outcome: DeliveryOutcome) -> dict[str, Any]:
    delivered = outcome.error is None
    if delivered:
        status = DeliveryStatus.DELIVERED
    elif outcome.retry_at is None:
        status = DeliveryStatus.FAILED
    else:
        status = DeliveryStatus.PENDING
    return {
        "b_id": outcome.delivery_id,
        "b_attempt": outcome.attempt,
        "b_status": status.value,
        "b_status_code": outcome.status_code,
        "b_error": outcome.error,
        "b_next": None if delivered else outcome.retry_at,
        "b_delivered_at": outcome.at if delivered else None,
    }
