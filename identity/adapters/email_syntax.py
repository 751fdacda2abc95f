"""Email syntax: a maintained validator turns what a person typed into an ``Email``.

The domain holds the normalised address and its bounds (``domain/emails.py``);
the syntax rules are the validator's, so they live here, beside the other
library-backed pieces, and every entry point (HTTP, CLI, the testing server)
normalises the same way.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from identity.domain.emails import MAX_EMAIL_LENGTH, Email
from identity.domain.errors import InvalidEmailError

__all__ = ["MAX_EMAIL_LENGTH", "normalise_email"]


def normalise_email(raw: str) -> Email:
    """Trimmed, domain lower-cased and IDNA-encoded; syntax from a maintained validator."""
    try:
        info = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmailError(str(error)) from None
    domain = (info.ascii_domain or info.domain).lower()
    return Email(f"{info.local_part}@{domain}")
