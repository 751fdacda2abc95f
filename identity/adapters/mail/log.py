"""Development mailer that writes mail to the log instead of sending it."""

from __future__ import annotations

import logging

from identity.application.ports import Mailer
from identity.domain.mail import EmailMessage

DEV_MAIL_LOGGER = "identity.mail.dev"


class LogMailer(Mailer):
    """Logs each message (recipient, subject, text body) at INFO on ``identity.mail.dev``.

    Chosen when no SMTP host is configured, so a developer can read the
    one-time codes. By design this is the only place in the service where a
    code reaches a log: never select it in production. The HTML part is left
    out, it carries the same content as the text part.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(DEV_MAIL_LOGGER)

    async def send(self, message: EmailMessage) -> None:
        self._logger.info(
            "development mail (not sent)\nFrom: %s\nTo: %s\nSubject: %s\n\n%s",
            message.sender,
            message.to,
            message.subject,
            message.text,
        )
