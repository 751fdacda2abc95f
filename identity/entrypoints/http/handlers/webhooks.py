"""The tenant's webhooks: create, list, delete, rotate the secret, list deliveries
(scope ``webhooks:manage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.webhooks import CreateWebhook, Webhooks
from identity.domain.api_keys import Scope
from identity.domain.events import EventType
from identity.domain.webhooks import Webhook, WebhookDelivery
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.problems import FieldError, validation_problem

endpoints = d.Endpoints(tag="webhooks")
MANAGE = d.api_key(Scope.WEBHOOKS_MANAGE)
WEBHOOK_ID = d.path_id("webhook_id", "the webhook's id")


@attrs.frozen
class NewWebhookBody:
    url: Annotated[
        str,
        d.Text(
            "where to POST events: https, or http to a public host; loopback, private, "
            "link-local, multicast and unspecified addresses are refused (after DNS "
            "resolution)",
            max_length=2048,
        ),
    ]
    events: Annotated[
        list[str],
        d.Strings(
            "the event types to receive",
            choices=tuple(kind.value for kind in EventType),
            max_items=len(EventType),
        ),
    ]


@attrs.frozen
class DeliveryQuery:
    limit: Annotated[int, d.Integer("page size", minimum=1, maximum=200)] = 50
    cursor: d.Cursor | None = None


@attrs.frozen
class WebhookView:
    """A webhook, never its secret."""

    id: UUID
    url: str
    events: list[str]
    created_at: datetime

    @classmethod
    def of(cls, webhook: Webhook) -> WebhookView:
        return cls(webhook.id, webhook.url, sorted(webhook.event_types), webhook.created_at)


@attrs.frozen
class NewWebhookView:
    """A new webhook; ``secret`` is shown this once and never again."""

    id: UUID
    url: str
    events: list[str]
    secret: str = d.out("`whsec_<base64>`: verify signatures with any Standard Webhooks library")
    created_at: datetime = d.out()


@attrs.frozen
class WebhookList:
    """Every webhook of the tenant (a tenant has few), oldest first."""

    items: list[WebhookView]
    next_cursor: str | None = d.out("always null: the whole list fits one page")


@attrs.frozen
class SecretView:
    """The new secret, shown once; the old one keeps signing beside it for 24 h."""

    secret: str


@attrs.frozen
class DeliveryView:
    """One event's delivery to the webhook."""

    id: UUID
    event_id: UUID
    type: str = d.out("the event type")
    status: str = d.out("pending, delivered or failed")
    attempts: int = d.out()
    last_status_code: int | None = d.out("the HTTP status of the last attempt, if it got one")
    last_error: str | None = d.out("why the last attempt failed")
    next_attempt_at: datetime | None = d.out("when it is tried next; null once settled")

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryView:
        return cls(
            delivery.id,
            delivery.event_id,
            delivery.event_type.value,
            delivery.status.value,
            delivery.attempts,
            delivery.last_status_code,
            delivery.last_error,
            delivery.next_attempt_at,
        )


@attrs.frozen
class DeliveryList:
    """A page of deliveries, newest first."""

    items: list[DeliveryView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


@endpoints.post(
    "/admin/webhooks",
    summary="Create a webhook",
    body=NewWebhookBody,
    ok=NewWebhookView,
    status=201,
    auth=MANAGE,
    errors=("validation_error",),
)
@inject
async def create_webhook(
    request: web.Request,
    body: NewWebhookBody,
    webhooks: Webhooks = Provide[Container.webhooks],
) -> NewWebhookView:
    if not body.events:
        raise validation_problem([FieldError("events", "must name at least one event type")])
    new = await webhooks.create(
        CreateWebhook(
            request_tenant(request).id,
            body.url,
            frozenset(EventType(kind) for kind in body.events),
        )
    )
    hook = new.webhook
    return NewWebhookView(hook.id, hook.url, sorted(hook.event_types), new.secret, hook.created_at)


@endpoints.get("/admin/webhooks", summary="List the tenant's webhooks", ok=WebhookList, auth=MANAGE)
@inject
async def list_webhooks(
    request: web.Request, webhooks: Webhooks = Provide[Container.webhooks]
) -> WebhookList:
    found = await webhooks.list(request_tenant(request).id)
    return WebhookList([WebhookView.of(hook) for hook in found], None)


@endpoints.delete(
    "/admin/webhooks/{webhook_id}",
    summary="Delete a webhook (its pending deliveries are dropped)",
    path_params=(WEBHOOK_ID,),
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def delete_webhook(
    request: web.Request, webhook_id: UUID, webhooks: Webhooks = Provide[Container.webhooks]
) -> None:
    await webhooks.delete(request_tenant(request).id, webhook_id)


@endpoints.post(
    "/admin/webhooks/{webhook_id}/rotate-secret",
    summary="Rotate a webhook's secret (both sign for 24 h)",
    path_params=(WEBHOOK_ID,),
    ok=SecretView,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def rotate_webhook_secret(
    request: web.Request, webhook_id: UUID, webhooks: Webhooks = Provide[Container.webhooks]
) -> SecretView:
    return SecretView(await webhooks.rotate_secret(request_tenant(request).id, webhook_id))


@endpoints.get(
    "/admin/webhooks/{webhook_id}/deliveries",
    summary="List a webhook's deliveries, newest first",
    path_params=(WEBHOOK_ID,),
    query=DeliveryQuery,
    ok=DeliveryList,
    auth=MANAGE,
    errors=("not_found", "validation_error"),
)
@inject
async def list_deliveries(
    request: web.Request,
    webhook_id: UUID,
    query: DeliveryQuery,
    webhooks: Webhooks = Provide[Container.webhooks],
) -> DeliveryList:
    page = await webhooks.deliveries(
        request_tenant(request).id, webhook_id, limit=query.limit, cursor=query.cursor
    )
    return DeliveryList([DeliveryView.of(item) for item in page.items], encode_cursor(page.next))
