"""What an external identity provider tells us about a person."""

from __future__ import annotations

import re

import attrs

# Provider names appear in paths, settings names (upper-cased) and stored links.
_PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
RESERVED_PROVIDER_NAMES = frozenset({"google", "github"})


def valid_provider_name(name: str) -> bool:
    """1-32 lower-case letters and digits, starting with a letter."""
    return bool(_PROVIDER_NAME.match(name))


@attrs.frozen
class OAuthClient:
    """The client credentials registered at the provider (may differ per tenant)."""

    client_id: str
    client_secret: str = attrs.field(repr=False)


@attrs.frozen
class ExternalIdentity:
    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None
