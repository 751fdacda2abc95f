"""What an external identity provider tells us about a person."""

from __future__ import annotations

import attrs


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
