"""A request for a one-time code, answered at once and carried out afterwards.

``register`` and ``request-otp`` answer every email alike, in status, body and
time: the request only stores one of these (the same write for every email),
and the account-dependent work (create or update the account, issue the code,
queue the mail) happens after the answer.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.domain.emails import Email
from identity.domain.otp import OtpPurpose


@attrs.frozen
class Registration:
    """What ``register`` carries besides the email: a hash made before anything was looked up."""

    password_hash: str | None = attrs.field(default=None, repr=False)
    full_name: str | None = None
    # Where the request came from, for the ``user.created`` event.
    client_ip: str | None = None
    user_agent: str | None = None
    # The page's language at sign-up: the account keeps it (section 16).
    locale: str | None = None


@attrs.frozen
class CodeRequest:
    """One pending ``register`` (``registration`` set) or ``request-otp``."""

    id: UUID
    tenant_id: UUID
    email: Email
    purpose: OtpPurpose
    requested_at: datetime
    registration: Registration | None = None
