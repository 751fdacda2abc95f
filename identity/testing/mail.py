"""Mail a test server captures instead of sending."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from datetime import datetime

import attrs

from identity.application.mail_templates import MailTemplates
from identity.application.ports import Clock, Mailer
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpPurpose

_CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


@attrs.frozen
class CapturedMail:
    """One message as the outbox handed it to the mailer.

    ``purpose`` is ``"verification"``, ``"login"`` or ``"password_reset"`` for
    a one-time code mail (``code`` then holds the code), None for a notice.
    """

    __test__ = False  # not a pytest test class, whatever a test module imports

    to: str
    subject: str
    text: str
    html: str
    sender: str
    purpose: str | None
    code: str | None = attrs.field(repr=False)
    sent_at: datetime


def code_purposes(templates: MailTemplates) -> dict[str, str]:
    """Subject -> purpose of each code mail the templates make (subjects carry no code)."""
    makers = {
        OtpPurpose.VERIFICATION: templates.verification_code,
        OtpPurpose.LOGIN: templates.login_code,
        OtpPurpose.PASSWORD_RESET: templates.password_reset_code,
    }
    return {
        make("someone@example.com", "000000", 1, locale=locale).subject: purpose.value
        for purpose, make in makers.items()
        for locale in (None, "de")
    }


class MailCapture(Mailer):
    """A ``Mailer`` that records every message; read it from any thread.

    With ``forward``, each message is also handed to that mailer (the one a
    test swapped in) and recorded only once it accepted it.
    """

    def __init__(
        self, purposes: Mapping[str, str], clock: Clock, forward: Mailer | None = None
    ) -> None:
        self._purposes = dict(purposes)
        self._clock = clock
        self._forward = forward
        self._lock = threading.Lock()
        self._messages: list[CapturedMail] = []

    async def send(self, message: EmailMessage) -> None:
        if self._forward is not None:
            await self._forward.send(message)
        purpose = self._purposes.get(message.subject)
        codes = _CODE.findall(message.text) if purpose else []
        captured = CapturedMail(
            to=message.to,
            subject=message.subject,
            text=message.text,
            html=message.html,
            sender=message.sender,
            purpose=purpose,
            code=codes[0] if len(codes) == 1 else None,
            sent_at=self._clock.now(),
        )
        with self._lock:
            self._messages.append(captured)

    def messages(self, email: str | None = None) -> list[CapturedMail]:
        """Every captured message to ``email`` (any case), or all of them, oldest first."""
        with self._lock:
            found = list(self._messages)
        if email is None:
            return found
        wanted = email.strip().lower()
        return [message for message in found if message.to.lower() == wanted]

    def last_code(self, email: str, purpose: str | OtpPurpose) -> str | None:
        """The code of the newest code mail to ``email`` for ``purpose``; None if none came."""
        wanted = purpose.value if isinstance(purpose, OtpPurpose) else OtpPurpose(purpose).value
        for message in reversed(self.messages(email)):
            if message.purpose == wanted and message.code is not None:
                return message.code
        return None

    def clear(self) -> None:
        """Forget what was captured so far."""
        with self._lock:
            self._messages.clear()
