"""One-time codes: a challenge sent to an inbox and checked once."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

import attrs

from identity.domain.errors import OtpInvalidError

OTP_LENGTH = 6
RESEND_INTERVAL = timedelta(seconds=60)


class OtpPurpose(StrEnum):
    VERIFICATION = "verification"
    LOGIN = "login"
    PASSWORD_RESET = "password_reset"
    ACCOUNT_DELETION = "account_deletion"


@attrs.define
class OtpChallenge:
    """The live code for one (tenant, email, purpose); only its keyed hash is kept."""

    id: UUID
    tenant_id: UUID
    email_key: str
    purpose: OtpPurpose
    code_digest: str = attrs.field(repr=False)
    created_at: datetime
    expires_at: datetime
    max_attempts: int
    attempts: int = 0
    consumed_at: datetime | None = None

    @classmethod
    def placeholder(
        cls, tenant_id: UUID, email_key: str, purpose: OtpPurpose, now: datetime, ttl: timedelta
    ) -> OtpChallenge:
        """A dead code that counts failed tries where no code was sent.

        It never matches: no attempt is allowed, and its digest is empty where a
        real one is 64 hex characters.
        """
        return cls(
            id=uuid4(),
            tenant_id=tenant_id,
            email_key=email_key,
            purpose=purpose,
            code_digest="",
            created_at=now,
            expires_at=now + ttl,
            max_attempts=0,
        )

    def is_usable(self, now: datetime) -> bool:
        return (
            self.consumed_at is None and now < self.expires_at and self.attempts < self.max_attempts
        )

    def may_be_replaced(self, now: datetime) -> bool:
        """At most one new code per email and purpose per minute."""
        return now - self.created_at >= RESEND_INTERVAL

    def check(self, code_digest: str, now: datetime) -> None:
        """Spend the code, or count a failed try and raise ``OtpInvalidError``.

        The caller must persist the challenge in both outcomes: a failed try
        counts even though the request fails.
        """
        if not self.is_usable(now):
            raise OtpInvalidError("the code is invalid or expired")
        if not hmac.compare_digest(self.code_digest, code_digest):
            self.attempts += 1
            raise OtpInvalidError("the code is invalid or expired")
        self.consumed_at = now
