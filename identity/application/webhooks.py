"""Webhooks: managing a tenant's endpoints, and delivering the queue of their events.

Delivery follows the Standard Webhooks specification: the body is
``{"type", "timestamp", "data": <event>}``; ``webhook-id`` is the event id
(stable across retries), ``webhook-timestamp`` the attempt's unix time and
``webhook-signature`` one ``v1,<base64 HMAC-SHA256>`` per live secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs

from identity.application.pagination import Page, page_of
from identity.application.ports import (
    Clock,
    DeliveryOutcome,
    DueDelivery,
    Position,
    UnitOfWorkFactory,
    WebhookDeliveryError,
    WebhookSender,
    WebhookTargetGuard,
)
from identity.domain.deliveries import error_note
from identity.domain.events import EventType, SecurityEvent
from identity.domain.webhooks import (
    RETRY_SCHEDULE,
    SECRET_PREFIX,
    Webhook,
    WebhookDelivery,
    WebhookNotFoundError,
    next_attempt_after,
)

log = logging.getLogger("identity.webhooks")

SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the secret's bytes."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event_document(event: SecurityEvent, tenant_slug: str) -> dict[str, Any]:
    """The event as clients see it, in ``GET /admin/events`` and in webhook bodies."""
    return {
        "id": str(event.id),
        "type": event.type.value,
        "occurred_at": iso(event.occurred_at),
        "tenant": tenant_slug,
        "user_id": str(event.user_id) if event.user_id else None,
        "session_id": str(event.session_id) if event.session_id else None,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "data": dict(event.data),
    }


def webhook_request(due: DueDelivery, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt, signed with every live secret."""
    body = json.dumps(
        {
            "type": due.event.type.value,
            "timestamp": iso(due.event.occurred_at),
            "data": event_document(due.event, due.tenant_slug),
        },
        separators=(",", ":"),
    ).encode()
    message_id = str(due.event.id)
    timestamp = int(now.timestamp())
    signatures = " ".join(
        signature(secret, message_id, timestamp, body)
        for secret in due.webhook.signing_secrets(now)
    )
    return body, {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


# --- management ------------------------------------------------------------------


@attrs.frozen
class CreateWebhook:
    tenant_id: UUID
    url: str
    event_types: frozenset[EventType]


@attrs.frozen
class NewWebhook:
    webhook: Webhook
    secret: str = attrs.field(repr=False)  # shown once


class Webhooks:
    """Create, list, delete a tenant's webhooks, rotate their secrets, list deliveries.

    Raises ``WebhookUrlRefusedError`` for a URL the guard refuses and
    ``WebhookNotFoundError`` for another tenant's or an unknown webhook.
    """

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, guard: WebhookTargetGuard) -> None:
        self._uow = uow
        self._clock = clock
        self._guard = guard

    async def create(self, command: CreateWebhook) -> NewWebhook:
        # Resolves the host: done before any transaction opens.
        await self._guard.check(command.url)
        secret = new_secret()
        webhook = Webhook(
            id=uuid.uuid4(),
            tenant_id=command.tenant_id,
            url=command.url,
            event_types=command.event_types,
            secret=secret,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.webhooks.add(webhook)
            await uow.commit()
        return NewWebhook(webhook, secret)

    async def list(self, tenant_id: UUID) -> list[Webhook]:
        async with self._uow() as uow:
            return await uow.webhooks.list_for_tenant(tenant_id)

    async def delete(self, tenant_id: UUID, webhook_id: UUID) -> None:
        """The webhook and its queued deliveries go at once."""
        async with self._uow() as uow:
            if not await uow.webhooks.delete(tenant_id, webhook_id):
                raise WebhookNotFoundError(str(webhook_id))
            await uow.commit()

    async def rotate_secret(self, tenant_id: UUID, webhook_id: UUID) -> str:
        """A new secret, returned once; the old one keeps signing beside it for 24 h."""
        async with self._uow() as uow:
            webhook = await uow.webhooks.get(tenant_id, webhook_id)
            if webhook is None:
                raise WebhookNotFoundError(str(webhook_id))
            secret = new_secret()
            webhook.rotate_secret(secret, self._clock.now())
            await uow.webhooks.update(webhook)
            await uow.commit()
        return secret

    async def deliveries(
        self, tenant_id: UUID, webhook_id: UUID, *, limit: int, cursor: Position | None = None
    ) -> Page[WebhookDelivery]:
        """The webhook's deliveries, newest first."""
        async with self._uow() as uow:
            if await uow.webhooks.get(tenant_id, webhook_id) is None:
                raise WebhookNotFoundError(str(webhook_id))
            found = await uow.webhook_deliveries.list_for_webhook(
                webhook_id,
                limit=limit + 1,
                before=cursor,
            )
        return page_of(found, limit, lambda delivery: (delivery.created_at, delivery.id))


# --- delivery --------------------------------------------------------------------


class DeliverWebhooks:
    """Deliver what is due, at least once. Safe in several processes at once: each
    attempt is leased to one worker by ``claim_due`` and sent outside any transaction.

    A 2xx answer delivers; anything else (another status, a timeout, a refused
    target) schedules the next try by ``schedule``, and after the last one the
    delivery is ``failed``.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        sender: WebhookSender,
        clock: Clock,
        *,
        schedule: tuple[timedelta, ...] = RETRY_SCHEDULE,
        batch_size: int = 100,
        concurrency: int = 50,
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._uow = uow
        self._sender = sender
        self._clock = clock
        self._schedule = schedule
        self._batch_size = batch_size
        self._lease = lease
        self._slots = asyncio.Semaphore(concurrency)

    async def __call__(self) -> int:
        """Deliver one batch; return how many attempts were made."""
        async with self._uow() as uow:
            due = await uow.webhook_deliveries.claim_due(
                self._clock.now(), self._batch_size, self._lease
            )
            await uow.commit()
        if not due:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(item) for item in due))
        async with self._uow() as uow:
            await uow.webhook_deliveries.record(list(outcomes))
            await uow.commit()
        return len(due)

    async def _attempt(self, due: DueDelivery) -> DeliveryOutcome:
        async with self._slots:
            now = self._clock.now()
            body, headers = webhook_request(due, now)
            status: int | None = None
            try:
                status = await self._sender.post(due.webhook.url, body, headers)
            except WebhookDeliveryError as error:
                reason = str(error)
            else:
                if 200 <= status < 300:
                    return DeliveryOutcome(
                        due.delivery.id, due.delivery.attempts, self._clock.now(), status, None
                    )
                reason = f"answered {status}"
        done = self._clock.now()
        retry_at = next_attempt_after(due.delivery.attempts, done, self._schedule)
        log.warning(
            "webhook delivery failed",
            extra={
                "delivery_id": str(due.delivery.id),
                "attempt": due.delivery.attempts,
                "given_up": retry_at is None,
                "reason": reason,
            },
        )
        return DeliveryOutcome(
            due.delivery.id,
            due.delivery.attempts,
            done,
            status,
            error_note(reason),
            retry_at=retry_at,
        )
