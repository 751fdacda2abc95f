"""The security event store over SQLAlchemy Core, with the webhook fan-out in the same write."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy import (
    JSON,
    Integer,
    String,
    Uuid,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.types import UtcDateTime
from identity.application.ports import EventRepository, Position
from identity.domain.events import EventType, SecurityEvent

_E = t.security_events
_W = t.webhooks
_D = t.webhook_deliveries

_EVENT_VALUES = {
    "id": bindparam("e_id", type_=Uuid()),
    "tenant_id": bindparam("e_tenant_id", type_=Uuid()),
    "type": bindparam("e_type", type_=String()),
    "occurred_at": bindparam("e_occurred_at", type_=UtcDateTime()),
    "user_id": bindparam("e_user_id", type_=Uuid()),
    "session_id": bindparam("e_session_id", type_=Uuid()),
    "ip": bindparam("e_ip", type_=String()),
    "user_agent": bindparam("e_user_agent", type_=String()),
    "data": bindparam("e_data", type_=JSON()),
}
_INSERT_EVENT = insert(_E).values(_EVENT_VALUES)

_SUBSCRIBED = and_(
    _W.c.tenant_id == bindparam("e_tenant_id", type_=Uuid()),
    _W.c.event_types.like(bindparam("e_pattern", type_=String())),
)


def _fan_out_columns() -> list[Any]:
    return [
        _D.c.id,
        _D.c.tenant_id,
        _D.c.webhook_id,
        _D.c.event_id,
        _D.c.event_type,
        _D.c.status,
        _D.c.attempts,
        _D.c.created_at,
        _D.c.next_attempt_at,
    ]


# Postgres: the event and its deliveries in one statement (one round trip, as
# the hot paths require), whether or not the tenant has any webhook.
_FAN_OUT_VALUES: list[Any] = [
    func.gen_random_uuid(),
    _W.c.tenant_id,
    _W.c.id,
    _EVENT_VALUES["id"],
    _EVENT_VALUES["type"],
    literal("pending", String()),
    literal(0, Integer()),
    _EVENT_VALUES["occurred_at"],
    _EVENT_VALUES["occurred_at"],
]
_INSERT_EVENT_AND_DELIVERIES = (
    insert(_D)
    .from_select(
        _fan_out_columns(),
        select(*_FAN_OUT_VALUES).where(_SUBSCRIBED),
    )
    .add_cte(_INSERT_EVENT.cte("new_event"))
)
_SUBSCRIBERS = select(_W.c.id).where(_SUBSCRIBED)


def subscription_pattern(event_type: EventType | str) -> str:
    return f"% {event_type} %"


def _to_entity(row: Any) -> SecurityEvent:
    return SecurityEvent(
        id=row.id,
        type=EventType(row.type),
        tenant_id=row.tenant_id,
        occurred_at=row.occurred_at,
        user_id=row.user_id,
        session_id=row.session_id,
        ip=row.ip,
        user_agent=row.user_agent,
        data=dict(row.data or {}),
    )


class SqlEventRepository(EventRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, event: SecurityEvent) -> None:
        params = {
            "e_id": event.id,
            "e_tenant_id": event.tenant_id,
            "e_type": event.type.value,
            "e_occurred_at": event.occurred_at,
            "e_user_id": event.user_id,
            "e_session_id": event.session_id,
            "e_ip": event.ip,
            "e_user_agent": event.user_agent,
            "e_data": dict(event.data),
            "e_pattern": subscription_pattern(event.type),
        }
        if self._c.dialect.name == "postgresql":
            await self._c.execute(_INSERT_EVENT_AND_DELIVERIES, params)
            return
        await self._c.execute(_INSERT_EVENT, params)
        subscribers = [row.id for row in await self._c.execute(_SUBSCRIBERS, params)]
        if subscribers:
            await self._c.execute(
                insert(_D),
                [
                    {
                        "id": uuid4(),
                        "tenant_id": event.tenant_id,
                        "webhook_id": webhook_id,
                        "event_id": event.id,
                        "event_type": event.type.value,
                        "status": "pending",
                        "attempts": 0,
                        "created_at": event.occurred_at,
                        "next_attempt_at": event.occurred_at,
                    }
                    for webhook_id in subscribers
                ],
            )

    async def list(
        self,
        tenant_id: UUID,
        *,
        limit: int,
        user_id: UUID | None = None,
        type: EventType | None = None,
        before: Position | None = None,
    ) -> list[SecurityEvent]:
        query = select(_E).where(_E.c.tenant_id == tenant_id)
        if user_id is not None:
            query = query.where(_E.c.user_id == user_id)
        if type is not None:
            query = query.where(_E.c.type == type.value)
        if before is not None:
            query = query.where(
                or_(
                    _E.c.occurred_at < before.created_at,
                    and_(_E.c.occurred_at == before.created_at, _E.c.id < before.id),
                )
            )
        query = query.order_by(_E.c.occurred_at.desc(), _E.c.id.desc()).limit(limit)
        return [_to_entity(row) for row in await self._c.execute(query)]

    async def delete_older_than(self, cutoff: datetime) -> int:
        old = select(_E.c.id).where(_E.c.occurred_at < cutoff)
        await self._c.execute(delete(_D).where(_D.c.event_id.in_(old)))
        result = await self._c.execute(delete(_E).where(_E.c.occurred_at < cutoff))
        return int(result.rowcount or 0)
