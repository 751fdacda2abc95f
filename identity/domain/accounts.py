"""The account entity: who a user is within one tenant."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.domain.emails import Email
from identity.domain.errors import AccountDisabledError, EmailNotVerifiedError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 256


@attrs.define
class Account:
    id: UUID
    tenant_id: UUID
    email: Email
    created_at: datetime
    updated_at: datetime
    password_hash: str | None = attrs.field(default=None, repr=False)
    full_name: str | None = None
    is_verified: bool = False
    is_active: bool = True
    verified_at: datetime | None = None
    # Read-only, derived from the linked external identities: their provider names, sorted.
    identities: tuple[str, ...] = ()
    mfa_enabled: bool = False  # kept by the MFA use cases: a confirmed second factor exists
    # Written by the storage when a sign-in opens a session (SessionRepository.add).
    last_login_at: datetime | None = None
    # The language the account signed up in (its mails are written in it); None: English.
    locale: str | None = None

    @property
    def has_password(self) -> bool:
        return self.password_hash is not None

    @property
    def google_linked(self) -> bool:
        return "google" in self.identities

    def verify_email(self, now: datetime) -> None:
        """The inbox is proven; idempotent."""
        if not self.is_verified:
            self.is_verified = True
            self.verified_at = now
            self.updated_at = now

    def verify_email_by_provider(self, now: datetime) -> None:
        """An identity provider vouched for the inbox while linking a sign-in to this account.

        A password set while the address was never proven may have been chosen by
        whoever registered someone else's address first (account pre-hijacking):
        it is dropped; the inbox owner can set one with a reset code.
        """
        if not self.is_verified:
            self.password_hash = None
        self.verify_email(now)

    def ensure_can_log_in(self) -> None:
        """Raise when a correct credential must still not open a session."""
        if not self.is_active:
            raise AccountDisabledError("the account is disabled")
        if not self.is_verified:
            raise EmailNotVerifiedError("the email address is not verified")

    def set_password_hash(self, password_hash: str, now: datetime) -> None:
        self.password_hash = password_hash
        self.updated_at = now

    def rename(self, full_name: str | None, now: datetime) -> None:
        if full_name != self.full_name:
            self.full_name = full_name
            self.updated_at = now

    def set_verified(self, verified: bool, now: datetime) -> None:
        """An operator's word on the inbox; un-verifying keeps the account but blocks login."""
        if verified:
            self.verify_email(now)
        elif self.is_verified:
            self.is_verified = False
            self.verified_at = None
            self.updated_at = now

    def touch(self, now: datetime) -> None:
        """Record a change to what belongs to the account (a linked identity removed)."""
        self.updated_at = now

    def disable(self, now: datetime) -> None:
        self.is_active = False
        self.updated_at = now

    def enable(self, now: datetime) -> None:
        self.is_active = True
        self.updated_at = now
