"""The rules the storage adapters only carry out, each held once above them: how long
a revoked session is kept, the placeholder code that never matches, the cut error."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.adapters.clock import ManualClock
from identity.adapters.memory import MemoryStore, memory_uow_factory
from identity.application.mail_delivery import DeliverPendingMail, PurgeExpired
from identity.application.ports import MailDeliveryError
from identity.domain.accounts import Account
from identity.domain.deliveries import MAX_ERROR_LENGTH, error_note
from identity.domain.emails import Email
from identity.domain.errors import OtpInvalidError
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.sessions import REVOKED_SESSION_RETENTION, Session
from identity.domain.tenants import Tenant

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_a_placeholder_code_never_matches_even_its_own_digest() -> None:
    placeholder = OtpChallenge.placeholder(
        uuid.uuid4(), "nobody@example.test", OtpPurpose.LOGIN, T0, timedelta(minutes=10)
    )

    assert not placeholder.is_usable(T0)
    assert placeholder.expires_at == T0 + timedelta(minutes=10)
    for digest in ("", "0" * 64):
        with pytest.raises(OtpInvalidError):
            placeholder.check(digest, T0)


def test_an_error_note_is_cut_to_its_column() -> None:
    assert error_note("short") == "short"
    assert error_note("x" * 900) == "x" * MAX_ERROR_LENGTH


async def test_the_purge_keeps_revoked_sessions_for_the_retention_then_drops_them() -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    tenant = Tenant(id=uuid.uuid4(), slug="acme", name="Acme", created_at=T0)
    account = Account(uuid.uuid4(), tenant.id, Email("a@example.test"), T0, T0)

    def session(revoked_at: datetime) -> Session:
        return Session(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            user_id=account.id,
            created_at=T0 - timedelta(days=3),
            last_used_at=T0,
            refresh_jti=uuid.uuid4().hex,
            refresh_issued_at=T0,
            expires_at=T0 + timedelta(days=30),
            revoked_at=revoked_at,
            revoked_reason="logout",
        )

    kept = session(T0 - REVOKED_SESSION_RETENTION + timedelta(minutes=1))
    dropped = session(T0 - REVOKED_SESSION_RETENTION - timedelta(minutes=1))
    async with memory_uow_factory(store)() as uow:
        await uow.tenants.add(tenant)
        await uow.accounts.add(account)
        for one in (kept, dropped):
            await uow.sessions.add(one)
        await uow.commit()

    counts = await PurgeExpired(memory_uow_factory(store), clock)()

    assert counts is not None and counts["sessions"] == 1
    async with memory_uow_factory(store)() as uow:
        assert await uow.sessions.get(tenant.id, kept.id) is not None
        assert await uow.sessions.get(tenant.id, dropped.id) is None


class FailingMailer:
    async def send(self, message: EmailMessage) -> None:
        raise MailDeliveryError("SMTP 451 " + "x" * 900)


async def test_mail_delivery_stores_the_failure_reason_cut() -> None:
    store, clock = MemoryStore(), ManualClock(T0)
    tenant_id = uuid.uuid4()
    message = EmailMessage("a@example.test", "Your code", "text", "<p>html</p>", "id@example.test")
    async with memory_uow_factory(store)() as uow:
        await uow.outbox.add(tenant_id, message, T0)
        await uow.commit()

    assert await DeliverPendingMail(memory_uow_factory(store), FailingMailer(), clock)() == 1

    [row] = store.table("outbox").values()
    last_error = getattr(row, "last_error", None)
    assert last_error is not None and last_error.startswith("SMTP 451 ")
    assert len(last_error) == MAX_ERROR_LENGTH
