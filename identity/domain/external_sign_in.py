"""Signing in with an external provider: the pending flow and the stored link."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.domain.accounts import Account
from identity.domain.errors import DomainError, IdentityNotLinkedError
from identity.domain.sign_in_methods import SignInMethods


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
    provider: str
    state_digest: str
    nonce: str = attrs.field(repr=False)
    code_verifier: str = attrs.field(repr=False)
    redirect_to: str | None
    created_at: datetime
    expires_at: datetime
    link_user_id: UUID | None = None
    """Set when a signed-in user started the flow: the callback links to that user."""

    def is_expired(self, now: datetime) -> bool:
        return now >= self.expires_at


def identity_to_unlink(
    account: Account, links: list[LinkedIdentity], provider: str, *, passkeys: int = 0
) -> LinkedIdentity:
    """The account's link at ``provider``, if removing it leaves a way to sign in.

    ``passkeys`` is the account's passkey count; the rule is ``SignInMethods``'s
    (``domain/sign_in_methods.py``). Raises ``IdentityNotLinkedError`` or
    ``LastSignInMethodError``.
    """
    mine = [link for link in links if link.user_id == account.id]
    target = next((link for link in mine if link.provider == provider), None)
    if target is None:
        raise IdentityNotLinkedError(provider)
    SignInMethods.of(account, identities=len(mine), passkeys=passkeys).ensure_one_remains_without(
        provider
    )
    return target
