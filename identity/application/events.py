"""Security events as the use cases state them, and reading them back."""

from __future__ import annotations

import base64
from datetime import datetime
from uuid import UUID

import attrs

from identity.application.ports import UnitOfWorkFactory
from identity.application.tokens import ClientInfo
from identity.domain.events import (
    DataValue,
    EventCursor,
    EventType,
    InvalidCursorError,
    SecurityEvent,
)


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


def encode_cursor(cursor: EventCursor) -> str:
    raw = f"{cursor.occurred_at.isoformat()}|{cursor.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> EventCursor:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        moment, _, event_id = raw.partition("|")
        occurred_at = datetime.fromisoformat(moment)
        if occurred_at.tzinfo is None:
            raise ValueError("naive")
        return EventCursor(occurred_at, UUID(event_id))
    except (ValueError, UnicodeDecodeError):
        raise InvalidCursorError("not a cursor of this list") from None


@attrs.frozen
class EventQuery:
    tenant_id: UUID
    limit: int = 50
    user_id: UUID | None = None
    type: EventType | None = None
    cursor: str | None = None


@attrs.frozen
class EventList:
    items: list[SecurityEvent]
    next_cursor: str | None


class ListEvents:
    """A page of a tenant's events, newest first, optionally of one user or one type.

    Raises ``InvalidCursorError`` for a cursor this list did not hand out.
    """

    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def __call__(self, query: EventQuery) -> EventList:
        before = decode_cursor(query.cursor) if query.cursor else None
        async with self._uow() as uow:
            # One more than asked tells whether another page follows.
            found = await uow.events.list(
                query.tenant_id,
                limit=query.limit + 1,
                user_id=query.user_id,
                type=query.type,
                before=before,
            )
        items = found[: query.limit]
        more = len(found) > query.limit
        last = items[-1] if items else None
        next_cursor = (
            encode_cursor(EventCursor(last.occurred_at, last.id)) if more and last else None
        )
        return EventList(items, next_cursor)
