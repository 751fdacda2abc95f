"""Multi-factor authentication: the TOTP factor, recovery codes, the pending second step.

Assurance levels follow NIST SP 800-63B: ``aal1`` after one factor, ``aal2``
after a second one. Authentication methods are RFC 8176 values.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from uuid import UUID

import attrs

from identity.domain.errors import DomainError, InvalidTokenError

AAL1 = "aal1"
AAL2 = "aal2"

MFA_TOKEN_TTL = timedelta(minutes=5)
MFA_TOKEN_MAX_ATTEMPTS = 5
RECOVERY_CODE_COUNT = 10


class Amr(StrEnum):
    """How a session's holder proved who they are (RFC 8176)."""

    PASSWORD = "pwd"
    EMAILED_CODE = "otp"
    TOTP = "totp"
    RECOVERY_CODE = "recovery"
    FEDERATED = "fed"


class SecondFactor(StrEnum):
    """What ``mfa_required`` offers as second steps."""

    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


class MfaInvalidError(DomainError):
    """A wrong, replayed or unusable second-factor code (one answer for all)."""


class MfaRequiredError(DomainError):
    """The operation needs a session that passed the second factor (aal2)."""


class MfaAlreadyEnabledError(DomainError):
    pass


class MfaNotEnabledError(DomainError):
    pass


@attrs.define
class TotpFactor:
    """An authenticator app's shared secret: pending until a first code confirms it.

    ``last_used_step`` is the RFC 6238 time step of the newest accepted code:
    a code of that step or an older one is a replay.
    """

    id: UUID
    tenant_id: UUID
    user_id: UUID
    secret: str = attrs.field(repr=False)
    created_at: datetime
    confirmed_at: datetime | None = None
    last_used_step: int | None = None

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    def accepts_step(self, step: int) -> bool:
        return self.last_used_step is None or step > self.last_used_step

    def use_step(self, step: int) -> None:
        """Record an accepted code; the repository applies this conditionally."""
        if not self.accepts_step(step):
            raise MfaInvalidError("code already used")
        self.last_used_step = step

    def confirm(self, step: int, now: datetime) -> None:
        self.use_step(step)
        self.confirmed_at = now


@attrs.frozen
class RecoveryCode:
    """One single-use recovery code; only its keyed digest is kept."""

    id: UUID
    tenant_id: UUID
    user_id: UUID
    code_digest: str = attrs.field(repr=False)
    created_at: datetime
    used_at: datetime | None = None


@attrs.define
class MfaChallenge:
    """The second step of a sign-in whose first factor passed (behind an ``mfa_token``).

    Bound to the account, the tenant, the first factor's method and the
    client (its user agent); single use; dead after five wrong codes or five
    minutes. Only the token's digest is kept (``key``).
    """

    key: str
    tenant_id: UUID
    user_id: UUID
    first_factor: Amr
    user_agent: str | None
    ip: str | None
    created_at: datetime
    expires_at: datetime
    attempts: int = 0
    consumed_at: datetime | None = None

    def ensure_usable(self, now: datetime, user_agent: str | None) -> None:
        """Raise ``InvalidTokenError`` for a spent, expired, exhausted or foreign token."""
        if (
            self.consumed_at is not None
            or now >= self.expires_at
            or self.attempts >= MFA_TOKEN_MAX_ATTEMPTS
            or user_agent != self.user_agent
        ):
            raise InvalidTokenError("mfa token unusable")

    def fail(self) -> None:
        """Count a wrong code; the caller persists it before answering."""
        self.attempts += 1

    def spend(self, now: datetime) -> None:
        self.consumed_at = now
