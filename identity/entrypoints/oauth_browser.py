"""The hosted pages' browser session as the authorization endpoint sees it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from uuid import UUID

from identity.application.browser_sessions import AuthenticateBrowser
from identity.application.ports import BrowserSessions, BrowserSignIn
from identity.application.tenancy import ResolveTenant
from identity.domain.errors import TenantNotFoundError


class PagesBrowserSessions(BrowserSessions):
    """The tenant's browser-session cookie -> who signed in, when, and how (its session's
    ``created_at`` is the ``auth_time``; ``aal`` and ``amr`` are the session's)."""

    def __init__(
        self, authenticate: Callable[[], AuthenticateBrowser], tenants: ResolveTenant
    ) -> None:
        self._authenticate = authenticate
        self._tenants = tenants

    async def signed_in(self, tenant_id: UUID, cookies: Mapping[str, str]) -> BrowserSignIn | None:
        # Imported here: the pages package imports the container, which builds this.
        from identity.entrypoints.pages.security import browser_cookie_name

        try:
            tenant = await self._tenants.by_id(tenant_id)
        except TenantNotFoundError:
            return None
        principal = await self._authenticate()(
            tenant, cookies.get(browser_cookie_name(tenant.slug))
        )
        if principal is None:
            return None
        claims = principal.claims
        return BrowserSignIn(
            principal.session_id,
            principal.account.id,
            claims.issued_at,
            claims.aal,
            claims.amr,
            principal.account,
        )
