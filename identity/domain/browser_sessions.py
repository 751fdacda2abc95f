"""Browser sessions: the cookie a hosted page sets, bound to one session of section 2.

The cookie holds an opaque random value; only its keyed digest is stored. The
session row it points at decides everything else (live, ended, aal): ending
that session ends the browser session with it.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

BROWSER = "browser"
API = "api"


@attrs.frozen
class BrowserSession:
    key_digest: str = attrs.field(repr=False)
    tenant_id: UUID
    session_id: UUID
    user_id: UUID
    created_at: datetime
