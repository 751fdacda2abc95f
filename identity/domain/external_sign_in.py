"""Signing in with an external provider: the pending flow and the stored link."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.domain.errors import DomainError


class IdentityAlreadyLinkedError(DomainError):
    """The (tenant, provider, subject) is linked already (a concurrent first sign-in won)."""


@attrs.frozen
class LinkedIdentity:
    """An account's identity at a provider, keyed by the provider's stable ``subject``.

    The email is only a record of what the provider said when the link was
    made: the subject, never the email, finds the account later.
    """

    id: UUID
    tenant_id: UUID
    user_id: UUID
    provider: str
    subject: str
    email_at_link: str | None
    created_at: datetime


@attrs.frozen
class PendingSignIn:
    """A sign-in started in one browser and not yet finished.

    ``key`` is the digest of an unguessable value held only in that browser's
    cookie and ``state_digest`` the digest of the ``state`` sent to the
    provider: the callback must bring both. Single use: taking it deletes it.
    """

    key: str
    tenant_id: UUID
    state_digest: str
    nonce: str = attrs.field(repr=False)
    code_verifier: str = attrs.field(repr=False)
    redirect_to: str | None
    created_at: datetime
    expires_at: datetime

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at
