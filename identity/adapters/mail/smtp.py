"""SMTP delivery with aiosmtplib."""

from __future__ import annotations

import email.message
import ssl
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

import aiosmtplib

from identity.application.ports import MailDeliveryError, Mailer
from identity.domain.mail import EmailMessage

TlsMode = Literal["none", "starttls", "tls"]
_TLS_MODES: frozenset[str] = frozenset({"none", "starttls", "tls"})
_MAX_REPLY_CHARS = 200


def build_mime_message(
    message: EmailMessage, *, now: datetime | None = None
) -> email.message.EmailMessage:
    """A multipart/alternative MIME message (text, then HTML) with Date and Message-ID.

    Raises ``ValueError`` for a header value that cannot be encoded safely
    (a line break in the subject or an address, for example).
    """
    mime = email.message.EmailMessage()
    mime["From"] = message.sender
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime["Date"] = format_datetime(now or datetime.now(UTC))
    # An explicit domain: make_msgid() would otherwise resolve the host's FQDN,
    # a blocking DNS lookup inside the event loop.
    sender_domain = parseaddr(message.sender)[1].rpartition("@")[2] or "localhost"
    mime["Message-ID"] = make_msgid(domain=sender_domain)
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    return mime


class SmtpMailer(Mailer):
    """Delivers each message over a new SMTP connection.

    ``tls_mode``: ``"none"`` (plain, no opportunistic upgrade), ``"starttls"``
    (upgrade required) or ``"tls"`` (implicit TLS, usually port 465).
    ``tls_context`` replaces the default certificate checks (a private CA).
    ``send`` raises ``MailDeliveryError``; its message names the failure and
    the server reply, never the body. The password stays out of ``repr``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls_mode: TlsMode,
        username: str | None,
        password: str | None,
        timeout_seconds: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls_mode not in _TLS_MODES:
            raise ValueError(f"tls_mode must be one of {sorted(_TLS_MODES)}, not {tls_mode!r}")
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self._host = host
        self._port = port
        self._tls_mode = tls_mode
        self._username = username
        self._password = password
        self._timeout = timeout_seconds
        self._tls_context = tls_context

    def __repr__(self) -> str:
        return (
            f"SmtpMailer(host={self._host!r}, port={self._port}, tls_mode={self._tls_mode!r}, "
            f"username={self._username!r}, timeout_seconds={self._timeout})"
        )

    async def send(self, message: EmailMessage) -> None:
        try:
            mime = build_mime_message(message)
        except ValueError as exc:
            raise MailDeliveryError(f"message cannot be encoded: {exc}", permanent=True) from exc
        try:
            await aiosmtplib.send(
                mime,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                use_tls=self._tls_mode == "tls",
                start_tls=self._tls_mode == "starttls",
                tls_context=self._tls_context,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refused.code for refused in exc.recipients]
            raise MailDeliveryError(
                _describe(exc, codes[0] if codes else None, _reply(exc.recipients)),
                permanent=bool(codes) and all(_is_5xx(code) for code in codes),
            ) from exc
        except (
            aiosmtplib.SMTPRecipientRefused,
            aiosmtplib.SMTPSenderRefused,
            aiosmtplib.SMTPDataError,
        ) as exc:
            # The server judged this message (its sender, recipient or content):
            # a 5xx answer will not change on retry.
            raise MailDeliveryError(
                _describe(exc, exc.code, exc.message), permanent=_is_5xx(exc.code)
            ) from exc
        except aiosmtplib.SMTPResponseException as exc:
            # Greeting, HELO, AUTH: the server or our configuration is at fault,
            # not the message; keep it for a retry once that is fixed.
            raise MailDeliveryError(_describe(exc, exc.code, exc.message)) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Connection refused or dropped, timeouts, TLS failures.
            raise MailDeliveryError(_describe(exc, None, str(exc))) from exc


def _is_5xx(code: int) -> bool:
    return 500 <= code < 600


def _reply(refused: list[aiosmtplib.SMTPRecipientRefused]) -> str:
    return "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in refused)


def _describe(exc: Exception, code: int | None, reply: str) -> str:
    prefix = f"SMTP {code}" if code is not None else "SMTP failure"
    return f"{prefix} ({type(exc).__name__}): {reply[:_MAX_REPLY_CHARS]}"
