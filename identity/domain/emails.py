"""The email address value object.

Syntax checking and IDNA encoding need a maintained validator, which lives at
the edge; the domain only holds the already-normalised address and the key
used for uniqueness (local part compared case-insensitively).
"""

from __future__ import annotations

import attrs

from identity.domain.errors import InvalidEmailError


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
