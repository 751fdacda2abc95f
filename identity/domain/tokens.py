"""Token claims as the domain sees them, independent of the JWT encoding."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.domain.organizations import OrgClaims


@attrs.frozen
class AccessClaims:
    subject: UUID
    session_id: UUID
    tenant_id: UUID
    token_id: str
    email: str
    email_verified: bool
    issued_at: datetime
    expires_at: datetime
    aal: str = "aal1"
    amr: tuple[str, ...] = ()
    # The session's organization (``org_id``, ``org_slug``, ``org_roles``, ``permissions``).
    org: OrgClaims | None = None


@attrs.frozen
class RefreshClaims:
    subject: UUID
    session_id: UUID
    tenant_id: UUID
    token_id: str
    issued_at: datetime
    expires_at: datetime
