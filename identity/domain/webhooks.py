"""Webhooks: a tenant's endpoints that receive its security events (Standard Webhooks)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

import attrs

from identity.domain.errors import DomainError
from identity.domain.events import EventType

SECRET_PREFIX = "whsec_"
# After a rotation the old secret keeps signing beside the new one this long.
ROTATION_OVERLAP = timedelta(hours=24)
# The retry schedule after a failed attempt (Standard Webhooks' suggestion);
# after the last one the delivery is ``failed``.
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)


class WebhookNotFoundError(DomainError):
    """No such webhook in the tenant."""


class WebhookUrlRefusedError(DomainError):
    """The URL is not https, or its host is loopback, private, link-local, multicast
    or unspecified (unless private targets are allowed). The message says why."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@attrs.define
class Webhook:
    id: UUID
    tenant_id: UUID
    url: str
    event_types: frozenset[EventType]
    secret: str = attrs.field(repr=False)
    created_at: datetime
    previous_secret: str | None = attrs.field(default=None, repr=False)
    previous_secret_expires_at: datetime | None = None

    def subscribes(self, event_type: EventType) -> bool:
        return event_type in self.event_types

    def rotate_secret(self, new_secret: str, now: datetime) -> None:
        """The new secret signs from now on; the current one keeps signing for the overlap."""
        self.previous_secret = self.secret
        self.previous_secret_expires_at = now + ROTATION_OVERLAP
        self.secret = new_secret

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets to sign with now: the current one, and the previous during the overlap."""
        secrets = [self.secret]
        if (
            self.previous_secret is not None
            and self.previous_secret_expires_at is not None
            and now < self.previous_secret_expires_at
        ):
            secrets.append(self.previous_secret)
        return secrets


@attrs.define
class WebhookDelivery:
    """One event to one webhook: retried until delivered or the schedule runs out."""

    id: UUID
    tenant_id: UUID
    webhook_id: UUID
    event_id: UUID
    event_type: EventType
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    locked_until: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None


def next_attempt_after(
    attempts: int, now: datetime, schedule: tuple[timedelta, ...] = RETRY_SCHEDULE
) -> datetime | None:
    """When to try again after ``attempts`` failed tries; None when the schedule is spent."""
    if attempts < 1 or attempts > len(schedule):
        return None
    return now + schedule[attempts - 1]
