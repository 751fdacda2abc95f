"""Security events as the use cases state them, and reading them back."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.application.pagination import Page, page_of
from identity.application.ports import Position, UnitOfWorkFactory
from identity.application.tokens import ClientInfo
from identity.domain.events import DataValue, EventType, SecurityEvent


def security_event(
    type: EventType,
    tenant_id: UUID,
    now: datetime,
    client: ClientInfo,
    *,
    user_id: UUID | None = None,
    session_id: UUID | None = None,
    **data: DataValue,
) -> SecurityEvent:
    """An event of the request described by ``client`` (its ip and user agent)."""
    return SecurityEvent.new(
        type,
        tenant_id,
        now,
        user_id=user_id,
        session_id=session_id,
        ip=client.ip,
        user_agent=client.user_agent,
        **data,
    )


@attrs.frozen
class EventQuery:
    tenant_id: UUID
    limit: int = 50
    user_id: UUID | None = None
    type: EventType | None = None
    cursor: Position | None = None


class ListEvents:
    """A page of a tenant's events, newest first, optionally of one user or one type."""

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, query: EventQuery) -> Page[SecurityEvent]:
        async with self._uow() as uow:
            # One more than asked tells whether another page follows.
            found = await uow.events.list(
                query.tenant_id,
                limit=query.limit + 1,
                user_id=query.user_id,
                type=query.type,
                before=query.cursor,
            )
        return page_of(found, query.limit, lambda event: (event.occurred_at, event.id))
