"""An email to send, as the outbox stores it."""

from __future__ import annotations

import attrs


@attrs.frozen
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    sender: str
