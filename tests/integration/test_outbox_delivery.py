"""Mail is never lost: the outbox, ``DeliverPendingMail`` and the real ``SmtpMailer``
against an aiosmtpd server that goes down and comes back on the same port.
"""

from __future__ import annotations

import asyncio
import functools
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient
from dependency_injector import providers
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.mail.smtp import SmtpMailer
from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.application.mail_delivery import DeliverPendingMail
from identity.application.ports import MailDeliveryError, Mailer, UnitOfWorkFactory
from identity.domain.mail import EmailMessage
from identity.entrypoints.http.app import build_container, create_app
from identity.entrypoints.settings import load_settings
from tests.fakes import manual_clock
from tests.smtp_server import SmtpTestServer

SECRET_KEY = "outbox-test-secret-key-0123456789abcdefgh"
RETRY_BASE = timedelta(seconds=30)
CODE = "736120"


@attrs.frozen
class Outbox:
    engine: AsyncEngine
    uow: UnitOfWorkFactory
    tenant_id: uuid.UUID

    async def queue(self, *messages: EmailMessage, now: Any) -> None:
        async with self.uow() as uow:
            for message in messages:
                await uow.outbox.add(self.tenant_id, message, now)
            await uow.commit()

    async def rows(self) -> list[Any]:
        async with self.engine.connect() as connection:
            return list(await connection.execute(select(t.outbox).order_by(t.outbox.c.created_at)))

    async def pending(self) -> int:
        async with self.uow() as uow:
            return await uow.outbox.pending_count()


async def open_outbox(url: str) -> Outbox:
    engine = make_engine(url)
    uow = functools.partial(SqlUnitOfWork, engine, Sealer(SECRET_KEY, "outbox"))
    async with uow() as unit:
        tenant = await unit.tenants.get_by_slug("default")
    assert tenant is not None
    return Outbox(engine, uow, tenant.id)


@pytest.fixture
async def outbox(database_url: str) -> AsyncIterator[Outbox]:
    box = await open_outbox(database_url)
    try:
        yield box
    finally:
        await box.engine.dispose()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    server = SmtpTestServer(
        rcpt_replies={
            "nobody@example.test": "550 5.1.1 No such user",
            "busy@example.test": "451 4.3.0 Try again later",
        }
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def mailer_for(server: SmtpTestServer) -> SmtpMailer:
    return SmtpMailer(
        server.host, server.port, tls_mode="none", username=None, password=None, timeout_seconds=2
    )


def message(to: str = "alice@example.test", subject: str = "Your code") -> EmailMessage:
    return EmailMessage(
        to=to,
        subject=subject,
        text=f"Your code is {CODE}",
        html=f"<p>Your code is <b>{CODE}</b></p>",
        sender="Acme <no-reply@acme.test>",
    )


async def test_mail_queued_while_smtp_is_down_is_delivered_once_it_is_back(
    outbox: Outbox, smtp: SmtpTestServer
) -> None:
    clock = manual_clock()
    deliver = DeliverPendingMail(outbox.uow, mailer_for(smtp), clock, retry_base=RETRY_BASE)
    await smtp.stop()
    queued_at = clock.now()
    await outbox.queue(message(), now=queued_at)

    # Down: the attempt fails, the message stays pending for a later retry.
    assert await deliver() == 1
    [row] = await outbox.rows()
    assert (row.state, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == queued_at + RETRY_BASE
    assert row.sealed_message is not None
    assert row.last_error and "SMTP" in row.last_error
    assert await outbox.pending() == 1

    # Back, but the retry is not due yet: the backoff holds.
    await smtp.start()
    assert await deliver() == 0
    assert smtp.messages == []

    clock.advance(seconds=RETRY_BASE.total_seconds())
    assert await deliver() == 1
    [received] = await smtp.wait_for_messages(1)
    assert received["To"] == "alice@example.test"
    assert received["Subject"] == "Your code"

    [row] = await outbox.rows()
    assert (row.state, row.attempts, row.sealed_message) == ("sent", 2, None)
    assert row.sent_at == clock.now()
    assert await outbox.pending() == 0

    # Sent is final: no later run sends it again.
    clock.advance(seconds=7 * 86400)
    assert await deliver() == 0
    assert len(smtp.messages) == 1


async def test_permanent_rejection_is_dead_and_never_retried(
    outbox: Outbox, smtp: SmtpTestServer
) -> None:
    clock = manual_clock()
    deliver = DeliverPendingMail(outbox.uow, mailer_for(smtp), clock, retry_base=RETRY_BASE)
    await outbox.queue(
        message("nobody@example.test"),
        message("busy@example.test"),
        message("alice@example.test"),
        now=clock.now(),
    )

    assert await deliver() == 3

    [received] = await smtp.wait_for_messages(1)
    assert received["To"] == "alice@example.test"
    rows = {row.id: row for row in await outbox.rows()}
    by_state = {row.state: row for row in rows.values()}
    assert sorted(row.state for row in rows.values()) == ["dead", "pending", "sent"]
    dead, retried = by_state["dead"], by_state["pending"]
    assert dead.sealed_message is None and "550" in dead.last_error
    assert retried.sealed_message is not None and "451" in retried.last_error
    assert retried.next_attempt_at == clock.now() + RETRY_BASE

    # The 451 is retried (and refused again); the 550 never is.
    clock.advance(seconds=86400)
    assert await deliver() == 1
    rows_after = {row.id: row for row in await outbox.rows()}
    assert rows_after[dead.id].state == "dead"
    assert rows_after[dead.id].attempts == 1
    assert (rows_after[retried.id].state, rows_after[retried.id].attempts) == ("pending", 2)
    assert len(smtp.messages) == 1


async def test_two_workers_deliver_every_message_exactly_once(
    postgres_databases: Any, smtp: SmtpTestServer
) -> None:
    url = postgres_databases.create_migrated()
    # Two engines: two server processes polling one database.
    boxes = [await open_outbox(url) for _ in range(2)]
    try:
        total = 30
        recipients = [f"user{number}@example.test" for number in range(total)]
        clock = manual_clock()
        await boxes[0].queue(*(message(to) for to in recipients), now=clock.now())
        workers = [
            DeliverPendingMail(box.uow, mailer_for(smtp), clock, batch_size=4) for box in boxes
        ]
        barrier = asyncio.Barrier(len(workers))

        async def run(deliver: Callable[[], Awaitable[int]]) -> int:
            await barrier.wait()
            handled = 0
            while count := await deliver():
                handled += count
            return handled

        handled = await asyncio.gather(*(run(worker) for worker in workers))

        assert sum(handled) == total
        assert all(handled), f"both workers must have taken part: {handled}"
        received = await smtp.wait_for_messages(total)
        assert sorted(message["To"] for message in received) == sorted(recipients)
        assert len({message["Message-ID"] for message in received}) == total
        assert sorted(r for envelope in smtp.envelopes for r in envelope.rcpt_tos) == sorted(
            recipients
        )
        rows = await boxes[1].rows()
        assert [(row.state, row.attempts) for row in rows] == [("sent", 1)] * total
    finally:
        for box in boxes:
            await box.engine.dispose()
        postgres_databases.drop(url)


class ObservedMailer(Mailer):
    """The real mailer, with an event for each failed attempt (no sleeping to find out)."""

    def __init__(self, inner: Mailer) -> None:
        self._inner = inner
        self.failures = 0
        self.failed = asyncio.Event()

    async def send(self, message: EmailMessage) -> None:
        try:
            await self._inner.send(message)
        except MailDeliveryError:
            self.failures += 1
            self.failed.set()
            raise


async def test_the_app_accepts_a_registration_during_an_outage_and_mails_the_code_later(
    migrated_postgres_url: str,
    smtp: SmtpTestServer,
    aiohttp_client: Callable[[Any], Awaitable[TestClient[Any, Any]]],
) -> None:
    await smtp.stop()
    settings = load_settings(
        {
            "IDENTITY_DATABASE_URL": migrated_postgres_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(30),
            "IDENTITY_BCRYPT_ROUNDS": "4",
            "IDENTITY_SMTP_HOST": "127.0.0.1",
            "IDENTITY_SMTP_PORT": str(smtp.port),
            "IDENTITY_SMTP_TLS": "none",
            "IDENTITY_SMTP_TIMEOUT": "2s",
        }
    )
    container = build_container(settings)
    mailer = ObservedMailer(container.mailer())
    container.mailer.override(providers.Object(mailer))
    # The default backoff starts at 5 s; a short one keeps the test short.
    container.deliver_mail.override(
        providers.Singleton(
            DeliverPendingMail,
            container.uow.provider,
            container.mailer,
            container.clock,
            retry_base=timedelta(milliseconds=50),
        )
    )
    client = await aiohttp_client(create_app(settings, container))
    email = "outage@example.com"

    response = await client.post(
        "/auth/register", json={"email": email, "password": "correct horse battery staple"}
    )
    assert response.status == 202, await response.text()

    async with asyncio.timeout(5):
        await mailer.failed.wait()
    async with container.uow() as uow:
        assert await uow.outbox.pending_count() == 1

    await smtp.start()
    [received] = await smtp.wait_for_messages(1)
    assert received["To"] == email
    body = received.get_body(preferencelist=("plain",))
    assert body is not None
    [code] = re.findall(r"(?<!\d)(\d{6})(?!\d)", body.get_content())

    response = await client.post(
        "/auth/verify-otp", json={"email": email, "otp_code": code, "purpose": "verification"}
    )
    assert response.status == 200, await response.text()
    assert (await response.json())["access_token"]
    async with container.uow() as uow:
        assert await uow.outbox.pending_count() == 0
    assert len(smtp.messages) == 1
    assert mailer.failures >= 1
