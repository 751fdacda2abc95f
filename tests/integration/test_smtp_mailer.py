"""SmtpMailer against a real aiosmtpd server (tests/smtp_server.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email.message import EmailMessage as MimeMessage

import pytest

from identity.adapters.mail.smtp import SmtpMailer, TlsMode
from identity.application.ports import MailDeliveryError
from identity.domain.mail import EmailMessage
from tests.smtp_server import SelfSignedCertificate, SmtpTestServer

BODY_SECRET = "483920"
MESSAGE = EmailMessage(
    to="alice@example.test",
    subject="Your sign-in code",
    text=f"Your code is {BODY_SECRET}",
    html=f"<p>Your code is <strong>{BODY_SECRET}</strong></p>",
    sender="Acme <no-reply@acme.test>",
)


@pytest.fixture(scope="module")
def certificate() -> SelfSignedCertificate:
    return SelfSignedCertificate.generate()


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpTestServer]:
    async with SmtpTestServer() as server:
        yield server


def mailer_for(
    server: SmtpTestServer,
    *,
    tls_mode: TlsMode = "none",
    certificate: SelfSignedCertificate | None = None,
    username: str | None = None,
    password: str | None = None,
) -> SmtpMailer:
    return SmtpMailer(
        server.host,
        server.port,
        tls_mode=tls_mode,
        username=username,
        password=password,
        timeout_seconds=2.0,
        tls_context=certificate.client_context() if certificate else None,
    )


def assert_delivered_intact(received: MimeMessage) -> None:
    assert received["From"] == "Acme <no-reply@acme.test>"
    assert received["To"] == "alice@example.test"
    assert received["Subject"] == "Your sign-in code"
    assert received["Message-ID"].endswith("@acme.test>")
    assert received["Date"] is not None
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(preferencelist=("plain",))
    html = received.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().strip() == MESSAGE.text
    assert html.get_content().strip() == MESSAGE.html


async def test_delivers_text_and_html_with_headers(smtp: SmtpTestServer) -> None:
    await mailer_for(smtp).send(MESSAGE)

    [received] = await smtp.wait_for_messages(1)
    assert_delivered_intact(received)
    assert smtp.envelopes[0].mail_from == "no-reply@acme.test"
    assert smtp.envelopes[0].rcpt_tos == ["alice@example.test"]


@pytest.mark.parametrize("tls_mode", ["starttls", "tls"])
async def test_delivers_over_tls_trusting_a_self_signed_certificate(
    certificate: SelfSignedCertificate, tls_mode: TlsMode
) -> None:
    async with SmtpTestServer(tls=tls_mode, certificate=certificate) as server:
        await mailer_for(server, tls_mode=tls_mode, certificate=certificate).send(MESSAGE)
        [received] = await server.wait_for_messages(1)
    assert_delivered_intact(received)


async def test_untrusted_certificate_is_a_temporary_failure(
    certificate: SelfSignedCertificate,
) -> None:
    async with SmtpTestServer(tls="tls", certificate=certificate) as server:
        # Default trust store: the self-signed certificate must be refused.
        with pytest.raises(MailDeliveryError) as caught:
            await mailer_for(server, tls_mode="tls").send(MESSAGE)
    assert caught.value.permanent is False
    assert server.messages == []


async def test_starttls_mode_refuses_a_server_without_starttls(smtp: SmtpTestServer) -> None:
    # No silent downgrade to plain text when TLS was asked for.
    with pytest.raises(MailDeliveryError):
        await mailer_for(smtp, tls_mode="starttls").send(MESSAGE)
    assert smtp.messages == []


async def test_authenticates_with_username_and_password(
    certificate: SelfSignedCertificate,
) -> None:
    async with SmtpTestServer(
        tls="starttls", certificate=certificate, credentials=("mailer", "s3cret")
    ) as server:
        mailer = mailer_for(
            server,
            tls_mode="starttls",
            certificate=certificate,
            username="mailer",
            password="s3cret",
        )
        await mailer.send(MESSAGE)
        await server.wait_for_messages(1)
    assert server.authenticated == ["mailer"]


async def test_wrong_password_is_a_delivery_error(certificate: SelfSignedCertificate) -> None:
    async with SmtpTestServer(
        tls="starttls", certificate=certificate, credentials=("mailer", "s3cret")
    ) as server:
        mailer = mailer_for(
            server,
            tls_mode="starttls",
            certificate=certificate,
            username="mailer",
            password="wrong-password",
        )
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(MESSAGE)
    # A configuration fault, not the message's: kept for a retry.
    assert caught.value.permanent is False
    assert "wrong-password" not in str(caught.value)
    assert server.messages == []


async def test_outage_is_temporary_and_delivery_resumes_on_restart(smtp: SmtpTestServer) -> None:
    mailer = mailer_for(smtp)
    port = smtp.port
    await smtp.stop()

    with pytest.raises(MailDeliveryError) as caught:
        await mailer.send(MESSAGE)
    assert caught.value.permanent is False
    assert BODY_SECRET not in str(caught.value)

    await smtp.start()
    assert smtp.port == port
    await mailer.send(MESSAGE)
    [received] = await smtp.wait_for_messages(1)
    assert received["To"] == "alice@example.test"


async def test_recipient_refused_with_550_is_permanent(smtp: SmtpTestServer) -> None:
    smtp.rcpt_replies["alice@example.test"] = "550 5.1.1 No such user here"

    with pytest.raises(MailDeliveryError) as caught:
        await mailer_for(smtp).send(MESSAGE)

    assert caught.value.permanent is True
    assert "550" in str(caught.value)
    assert BODY_SECRET not in str(caught.value)
    assert smtp.messages == []


async def test_recipient_deferred_with_451_is_temporary(smtp: SmtpTestServer) -> None:
    smtp.rcpt_replies["alice@example.test"] = "451 4.3.0 Try again later"

    with pytest.raises(MailDeliveryError) as caught:
        await mailer_for(smtp).send(MESSAGE)

    assert caught.value.permanent is False
    assert "451" in str(caught.value)


async def test_silent_server_times_out_as_temporary_failure() -> None:
    client_left = asyncio.Event()

    async def never_greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # holds the connection open until the client leaves
        writer.close()
        await writer.wait_closed()
        client_left.set()

    server = await asyncio.start_server(never_greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mailer = SmtpMailer(
        "127.0.0.1", port, tls_mode="none", username=None, password=None, timeout_seconds=0.2
    )
    try:
        with pytest.raises(MailDeliveryError) as caught:
            await mailer.send(MESSAGE)
        # The client connected, waited for a greeting, gave up and hung up.
        await asyncio.wait_for(client_left.wait(), timeout=2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.permanent is False


async def test_header_injection_is_refused_before_connecting(smtp: SmtpTestServer) -> None:
    evil = EmailMessage(
        to="alice@example.test\r\nBcc: mallory@evil.test",
        subject="hi",
        text="t",
        html="<p>h</p>",
        sender="no-reply@acme.test",
    )
    with pytest.raises(MailDeliveryError) as caught:
        await mailer_for(smtp).send(evil)
    assert caught.value.permanent is True
    assert smtp.messages == []


def test_repr_hides_the_password() -> None:
    mailer = SmtpMailer(
        "smtp.example.test", 587, tls_mode="starttls", username="mailer", password="hunter2-pw"
    )
    assert "hunter2-pw" not in repr(mailer)
    assert "hunter2-pw" not in str(mailer)
    assert "mailer" in repr(mailer)


def test_rejects_an_unknown_tls_mode() -> None:
    with pytest.raises(ValueError, match="tls_mode"):
        SmtpMailer("h", 25, tls_mode="ssl", username=None, password=None)  # type: ignore[arg-type]
