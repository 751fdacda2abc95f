"""Sessions: one per login, a family of rotating refresh tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from uuid import UUID

import attrs

# Revoked sessions stay a day so a replayed refresh token is still recognised as reuse.
REVOKED_SESSION_RETENTION = timedelta(days=1)


class Presented(Enum):
    """What a presented refresh token is to its session."""

    CURRENT = "current"  # the live token: rotate it
    IN_GRACE = "in_grace"  # just rotated: answer with the same successor
    REUSED = "reused"  # spent earlier: someone replays it, end the family
    DEAD = "dead"  # session ended or expired


@attrs.define
class Session:
    id: UUID
    tenant_id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    refresh_jti: str
    refresh_issued_at: datetime
    expires_at: datetime
    user_agent: str | None = None
    ip: str | None = None
    previous_refresh_jti: str | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    aal: str = "aal1"
    amr: tuple[str, ...] = ()
    # "api" or "browser" (a hosted page's cookie holds it); not stored on the row:
    # the listing use cases fill it from the browser sessions.
    kind: str = "api"

    def is_active(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.expires_at

    def classify(self, jti: str, now: datetime, grace: timedelta) -> Presented:
        if not self.is_active(now):
            return Presented.DEAD
        if jti == self.refresh_jti:
            return Presented.CURRENT
        if (
            jti == self.previous_refresh_jti
            and self.rotated_at is not None
            and now - self.rotated_at <= grace
        ):
            return Presented.IN_GRACE
        return Presented.REUSED

    def rotate(self, new_jti: str, now: datetime, ttl: timedelta) -> None:
        """Spend the current token; the repository applies this conditionally."""
        self.previous_refresh_jti = self.refresh_jti
        self.refresh_jti = new_jti
        self.rotated_at = now
        self.refresh_issued_at = now
        self.last_used_at = now
        self.expires_at = now + ttl

    def step_up(self, method: str) -> None:
        """A second factor passed: the session is aal2 from now on (refreshes keep it)."""
        self.aal = "aal2"
        if method not in self.amr:
            self.amr = (*self.amr, method)

    def revoke(self, now: datetime, reason: str) -> None:
        if self.revoked_at is None:
            self.revoked_at = now
            self.revoked_reason = reason
