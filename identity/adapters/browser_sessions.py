"""Who is signed in in a browser, for the authorization endpoint.

The hosted pages (section 16) own the browser session and its cookie. Until
they are part of the deployment, nobody is ever signed in: the authorization
endpoint sends every browser to ``/ui/sign-in``.
"""

from __future__ import annotations

from collections.abc import Mapping
from uuid import UUID

from identity.application.ports import BrowserSessions, BrowserSignIn


class NoBrowserSessions(BrowserSessions):
    async def signed_in(self, tenant_id: UUID, cookies: Mapping[str, str]) -> BrowserSignIn | None:
        return None
