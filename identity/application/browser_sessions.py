"""Browser sessions of the hosted pages: a cookie bound to a session of section 2.

A page signs in through the very use cases of the JSON API (password, code,
second factor); the session they open becomes a browser session by binding a
random cookie value to it here. Whatever ends the session (sign-out,
logout-all, a password change or reset, disabling or deleting the account)
ends the browser session, because every request reads the session row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from uuid import UUID

import attrs

from identity.application.ports import ActiveSessionReader, Clock, UnitOfWorkFactory
from identity.application.session_ending import end_session
from identity.application.sessions import Principal
from identity.application.tokens import NO_CLIENT, ClientInfo, TokenPair
from identity.domain.browser_sessions import BrowserSession
from identity.domain.tenants import Tenant
from identity.domain.tokens import AccessClaims

# A cookie value is 43 characters (32 random bytes); anything far longer is junk.
MAX_COOKIE_LENGTH = 128


class BrowserKeyDigester:
    """HMAC-SHA256 of a cookie value, keyed by the master secret and bound to the tenant.

    The value is random (not a password), so a fast keyed hash suffices: a
    database leak alone gives no usable cookie.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(
            secret_key.encode(), b"identity/browser-session/v1", hashlib.sha256
        ).digest()

    def digest(self, tenant_id: UUID, value: str) -> str:
        return hmac.new(self._key, f"{tenant_id}|{value}".encode(), hashlib.sha256).hexdigest()


@attrs.frozen
class BrowserSessionServices:
    uow: UnitOfWorkFactory
    clock: Clock
    digester: BrowserKeyDigester
    # Every page's cookie lookup: one read outside any transaction.
    session_reader: ActiveSessionReader


class StartBrowserSession:
    """Bind a new cookie value to the session a sign-in use case just opened.

    Returns the value to set as the cookie (shown once, stored only as a digest).
    """

    def __init__(self, services: BrowserSessionServices) -> None:
        self._s = services

    async def __call__(self, pair: TokenPair) -> str:
        assert pair.session_id is not None, "a sign-in opens a session"
        value = secrets.token_urlsafe(32)
        async with self._s.uow() as uow:
            await uow.browser_sessions.add(
                BrowserSession(
                    key_digest=self._s.digester.digest(pair.tenant.id, value),
                    tenant_id=pair.tenant.id,
                    session_id=pair.session_id,
                    user_id=pair.account.id,
                    created_at=self._s.clock.now(),
                )
            )
            await uow.commit()
        return value


class AuthenticateBrowser:
    """Cookie value -> the principal behind its live session, or None.

    None for a missing, unknown or ended session, or an account gone or
    disabled: the page then treats the browser as signed out.
    """

    def __init__(self, services: BrowserSessionServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, value: str | None) -> Principal | None:
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return None
        digest = self._s.digester.digest(tenant.id, value)
        found = await self._s.session_reader.browser_session(tenant.id, digest)
        if found is None:
            return None
        session, account = found
        if not session.is_active(self._s.clock.now()):
            return None
        if not account.is_active or session.user_id != account.id:
            return None
        claims = AccessClaims(
            subject=account.id,
            session_id=session.id,
            tenant_id=tenant.id,
            token_id=f"browser:{session.id}",
            email=account.email.value,
            email_verified=account.is_verified,
            issued_at=session.created_at,
            expires_at=session.expires_at,
            aal=session.aal,
            amr=session.amr,
        )
        return Principal(account, tenant, session.id, claims)


class EndBrowserSession:
    """Sign-out: end the cookie's session (``session.revoked``, reason ``logout``) and
    forget the cookie. Idempotent; an unknown cookie changes nothing."""

    def __init__(self, services: BrowserSessionServices) -> None:
        self._s = services

    async def __call__(
        self, tenant: Tenant, value: str | None, client: ClientInfo = NO_CLIENT
    ) -> None:
        if not value or len(value) > MAX_COOKIE_LENGTH:
            return
        digest = self._s.digester.digest(tenant.id, value)
        async with self._s.uow() as uow:
            browser = await uow.browser_sessions.get(tenant.id, digest)
            if browser is None:
                return
            now = self._s.clock.now()
            await end_session(
                uow,
                tenant.id,
                browser.user_id,
                browser.session_id,
                now,
                client,
                "logout",
                by_session_id=browser.session_id,
            )
            await uow.browser_sessions.delete(tenant.id, digest)
            await uow.commit()
