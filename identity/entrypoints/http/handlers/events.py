"""Reading security events: a tenant's (``events:read``) and a user's own."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.events import EventQuery, ListEvents
from identity.application.pagination import Page
from identity.domain.api_keys import Scope
from identity.domain.events import EventType, SecurityEvent
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor

endpoints = d.Endpoints(tag="events")


PageSize = Annotated[int, d.Integer("page size", minimum=1, maximum=200)]


@attrs.frozen
class PageQuery:
    limit: PageSize = 50
    cursor: d.Cursor | None = None


@attrs.frozen
class AdminEventQuery:
    user_id: Annotated[UUID, d.Id("only this user's events")] | None = None
    type: Annotated[EventType, d.Choice("only events of this type")] | None = None
    limit: PageSize = 50
    cursor: d.Cursor | None = None


@attrs.frozen
class EventView:
    """A security event; never holds a password, code, token, secret or hash."""

    id: UUID
    type: str = d.out("the event type, e.g. `login.succeeded`")
    occurred_at: datetime = d.out()
    tenant: str = d.out("the tenant's slug")
    user_id: UUID | None = d.out("the user it is about; null for an unknown email")
    session_id: UUID | None = d.out("the session it is about or came from")
    ip: str | None = d.out("the client's address (trusted-proxy rules applied)")
    user_agent: str | None = d.out("the client's User-Agent, cut to 512 characters")
    data: dict[str, Any] = d.out("type-specific details, e.g. `method`, `reason`")

    @classmethod
    def of(cls, event: SecurityEvent, tenant_slug: str) -> EventView:
        return cls(
            event.id,
            event.type.value,
            event.occurred_at,
            tenant_slug,
            event.user_id,
            event.session_id,
            event.ip,
            event.user_agent,
            dict(event.data),
        )


@attrs.frozen
class EventListView:
    """A page of events, newest first."""

    items: list[EventView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")

    @classmethod
    def of(cls, found: Page[SecurityEvent], tenant_slug: str) -> EventListView:
        items = [EventView.of(event, tenant_slug) for event in found.items]
        return cls(items, encode_cursor(found.next))


@endpoints.get(
    "/admin/events",
    summary="List the tenant's security events, newest first",
    query=AdminEventQuery,
    ok=EventListView,
    auth=d.api_key(Scope.EVENTS_READ),
    errors=("validation_error",),
)
@inject
async def list_events(
    request: web.Request,
    query: AdminEventQuery,
    use_case: ListEvents = Provide[Container.list_events],
) -> EventListView:
    tenant = request_tenant(request)
    found = await use_case(
        EventQuery(tenant.id, query.limit, query.user_id, query.type, query.cursor)
    )
    return EventListView.of(found, tenant.slug)


@endpoints.get(
    "/auth/me/events",
    summary="List the caller's own security events, newest first",
    query=PageQuery,
    ok=EventListView,
    auth=d.BEARER,
    errors=("validation_error",),
)
@inject
async def my_events(
    request: web.Request,
    query: PageQuery,
    use_case: ListEvents = Provide[Container.list_events],
) -> EventListView:
    principal = d.user(request)
    found = await use_case(
        EventQuery(
            principal.tenant.id, query.limit, user_id=principal.account.id, cursor=query.cursor
        )
    )
    return EventListView.of(found, principal.tenant.slug)
