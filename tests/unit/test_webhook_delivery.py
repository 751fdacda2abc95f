"""Webhook delivery and the event purge as use cases over the in-memory storage, with a
fake sender: the schedule, give-up, the signature a Standard Webhooks library accepts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import timedelta

import pytest
import standardwebhooks

from identity.adapters.clock import ManualClock
from identity.adapters.memory import MemoryStore, memory_uow_factory
from identity.application.mail_delivery import PurgeExpired
from identity.application.ports import WebhookDeliveryError, WebhookSender
from identity.application.webhooks import DeliverWebhooks, new_secret
from identity.domain.events import EventType, SecurityEvent
from identity.domain.tenants import Tenant
from identity.domain.webhooks import DeliveryStatus, Webhook
from identity.entrypoints.settings import SettingsError, load_settings
from tests.fakes import manual_clock

SCHEDULE = (timedelta(seconds=5), timedelta(minutes=5))


class FakeSender(WebhookSender):
    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[str, bytes, dict[str, str]]] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        self.sent.append((url, body, dict(headers)))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return answer


async def setup(store: MemoryStore, clock: ManualClock) -> tuple[Webhook, SecurityEvent]:
    tenant = Tenant(id=uuid.uuid4(), slug="acme", name="Acme", created_at=clock.now())
    hook = Webhook(
        uuid.uuid4(),
        tenant.id,
        "https://hooks.example.test/in",
        frozenset({EventType.LOGIN_FAILED}),
        new_secret(),
        clock.now(),
    )
    event = SecurityEvent.new(EventType.LOGIN_FAILED, tenant.id, clock.now(), reason="x")
    async with memory_uow_factory(store)() as uow:
        await uow.tenants.add(tenant)
        await uow.webhooks.add(hook)
        await uow.events.add(event)
        await uow.commit()
    return hook, event


async def statuses(store: MemoryStore, hook: Webhook) -> list[tuple[DeliveryStatus, int]]:
    async with memory_uow_factory(store)() as uow:
        found = await uow.webhook_deliveries.list_for_webhook(hook.id, limit=10)
    return [(item.status, item.attempts) for item in found]


async def test_a_delivery_is_signed_for_any_standard_webhooks_library() -> None:
    store, clock = MemoryStore(), manual_clock()
    hook, event = await setup(store, clock)
    sender = FakeSender(204)
    deliver = DeliverWebhooks(memory_uow_factory(store), sender, clock, schedule=SCHEDULE)

    assert await deliver() == 1

    [(url, body, headers)] = sender.sent
    payload = standardwebhooks.Webhook(hook.secret).verify(body, headers)
    assert url == hook.url and headers["webhook-id"] == str(event.id)
    assert payload["type"] == "login.failed" and payload["data"]["tenant"] == "acme"
    assert await statuses(store, hook) == [(DeliveryStatus.DELIVERED, 1)]
    assert await deliver() == 0


async def test_failures_follow_the_schedule_then_give_up() -> None:
    store, clock = MemoryStore(), manual_clock()
    hook, _ = await setup(store, clock)
    sender = FakeSender(500, WebhookDeliveryError("timed out"), 502)
    deliver = DeliverWebhooks(memory_uow_factory(store), sender, clock, schedule=SCHEDULE)

    assert await deliver() == 1
    clock.advance(seconds=4)
    assert await deliver() == 0  # not due before 5 s
    clock.advance(seconds=1)
    assert await deliver() == 1
    clock.advance(seconds=300)
    assert await deliver() == 1
    assert await statuses(store, hook) == [(DeliveryStatus.FAILED, 3)]
    clock.advance(seconds=86400)
    assert await deliver() == 0
    assert len(sender.sent) == 3


async def test_the_purge_drops_events_past_their_retention() -> None:
    store, clock = MemoryStore(), manual_clock()
    hook, event = await setup(store, clock)
    clock.advance(days=31)
    purge = PurgeExpired(memory_uow_factory(store), clock, timedelta(days=30))

    counts = await purge()

    assert counts is not None and counts["security_events"] == 1
    async with memory_uow_factory(store)() as uow:
        assert await uow.events.list(event.tenant_id, limit=10) == []
    assert await statuses(store, hook) == []  # its deliveries went with it


def test_settings_read_the_retention_and_the_private_target_switch() -> None:
    base = {"IDENTITY_SECRET_KEY": "s" * 40, "IDENTITY_DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    defaults = load_settings(base)
    assert defaults.event_retention == 90 * 86400 and defaults.webhook_allow_private is False
    custom = load_settings(
        {**base, "IDENTITY_EVENT_RETENTION": "30d", "IDENTITY_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    assert custom.event_retention == 30 * 86400 and custom.webhook_allow_private is True
    with pytest.raises(SettingsError, match="IDENTITY_EVENT_RETENTION"):
        load_settings({**base, "IDENTITY_EVENT_RETENTION": "forever"})
