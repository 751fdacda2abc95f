"""LogMailer: the development mailer shows the mail on its own logger."""

from __future__ import annotations

import logging

import pytest

from identity.adapters.mail.log import DEV_MAIL_LOGGER, LogMailer
from identity.domain.mail import EmailMessage


async def test_logs_recipient_subject_and_text_on_the_dev_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = EmailMessage(
        to="bob@example.test",
        subject="Your sign-in code",
        text="Your code is 731904",
        html="<p>HTML-ONLY-MARKER</p>",
        sender="no-reply@acme.test",
    )
    with caplog.at_level(logging.INFO, logger=DEV_MAIL_LOGGER):
        await LogMailer().send(message)

    [record] = caplog.records
    assert record.name == "identity.mail.dev"
    assert record.levelno == logging.INFO
    logged = record.getMessage()
    assert "bob@example.test" in logged
    assert "Your sign-in code" in logged
    assert "731904" in logged
    assert "HTML-ONLY-MARKER" not in logged
