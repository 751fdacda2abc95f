"""The email address value object.

Syntax checking and IDNA encoding need a maintained validator
(``adapters/email_syntax.py``); the domain holds the already-normalised
address, its longest length, and the key used for uniqueness (local part
compared case-insensitively).
"""

from __future__ import annotations

import attrs

from identity.domain.errors import InvalidEmailError

MAX_EMAIL_LENGTH = 320
"""The longest address accepted anywhere (RFC 3696 errata: 64 + 1 + 255)."""


@attrs.frozen
class Email:
    """A normalised address: trimmed, domain lower-cased and IDNA-encoded."""

    value: str

    def __attrs_post_init__(self) -> None:
        local, sep, domain = self.value.rpartition("@")
        if not sep or not local or not domain or self.value != self.value.strip():
            raise InvalidEmailError("not a normalised email address")
        if domain != domain.lower():
            raise InvalidEmailError("the domain must be lower-cased")

    @property
    def key(self) -> str:
        """The lookup key: the whole address compared case-insensitively."""
        return self.value.casefold()

    def __str__(self) -> str:
        return self.value
