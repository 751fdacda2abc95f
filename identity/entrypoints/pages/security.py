"""The pages' browser-facing defences: cookies, CSRF, origin checks, headers, return_to.

Two Chromium traps shape the origin check and the CSP:

- with ``Referrer-Policy: no-referrer`` Chrome sends ``Origin: null`` on a
  same-origin form post, so ``Origin: null`` alone proves nothing: the check
  reads ``Sec-Fetch-Site`` first and refuses only what a header names as
  another site (the CSRF token is checked on every post regardless); the
  pages send ``Referrer-Policy: same-origin``, under which Chrome sends the
  real origin;
- a CSP ``form-action 'self'`` makes Chrome block the redirect that follows a
  form post to another origin (an allow-listed ``return_to``, an OAuth
  client's redirect URI), so the pages' CSP leaves ``form-action`` out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

from identity.application.redirects import is_allowed_redirect

CSRF_COOKIE = "identity_csrf"
CSRF_FIELD = "csrf_token"
DEFAULT_RETURN_TO = "/ui/account"
# The own paths a return_to may name: the pages and the OpenID Provider's authorize step.
OWN_PREFIXES = ("/ui/", "/oauth2/authorize")
MAX_RETURN_TO = 2048


def browser_cookie_name(tenant_slug: str) -> str:
    """One browser-session cookie per tenant."""
    return f"identity_session_{tenant_slug}"


def mfa_cookie_name(tenant_slug: str) -> str:
    """The pending second step of a page sign-in (its ``mfa_token``), per tenant."""
    return f"identity_mfa_{tenant_slug}"


def is_secure(issuer: str) -> bool:
    return issuer.startswith("https://")


def set_cookie(
    response: web.StreamResponse,
    name: str,
    value: str,
    *,
    issuer: str,
    max_age: int | None = None,
    path: str = "/",
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="Lax",
        secure=is_secure(issuer),
    )


def clear_cookie(response: web.StreamResponse, name: str, *, issuer: str, path: str = "/") -> None:
    response.del_cookie(name, path=path, secure=is_secure(issuer), httponly=True, samesite="Lax")


def new_csrf_seed() -> str:
    return secrets.token_urlsafe(32)


class CsrfTokens:
    """A form's token: HMAC of the browser's CSRF cookie, the tenant, and the browser
    session cookie (so signing in or out makes earlier tokens useless)."""

    def __init__(self, secret_key: str) -> None:
        self._key = hmac.new(secret_key.encode(), b"identity/csrf/v1", hashlib.sha256).digest()

    def token(self, seed: str, tenant_slug: str, browser_value: str | None) -> str:
        message = f"{seed}|{tenant_slug}|{browser_value or ''}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def check(
        self, presented: str, seed: str | None, tenant_slug: str, browser_value: str | None
    ) -> bool:
        if not seed or not presented or len(presented) > 64:
            return False
        expected = self.token(seed, tenant_slug, browser_value)
        return hmac.compare_digest(presented.encode(), expected.encode())


def own_origins(request: web.Request, issuer: str) -> set[str]:
    """The origins the pages are served from: the issuer's and the request's own."""
    origins = {f"{request.scheme}://{request.host}".lower()}
    parts = urlsplit(issuer)
    if parts.scheme and parts.netloc:
        origins.add(f"{parts.scheme}://{parts.netloc}".lower())
    return origins


def is_cross_site(request: web.Request, issuer: str) -> bool:
    """True when the browser says the post comes from another site or origin."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # Older browsers send no Origin; Chrome sends "null" under no-referrer.
        # Sec-Fetch-Site (when sent) was checked above; the CSRF token decides.
        return False
    return origin.lower() not in own_origins(request, issuer)


def safe_return_to(value: str | None, allowlist: Sequence[str]) -> str:
    """``value`` when it is one of the service's own pages (a path) or allowed by
    ``IDENTITY_OAUTH_REDIRECT_ALLOWLIST``; otherwise the account page."""
    if not value or len(value) > MAX_RETURN_TO:
        return DEFAULT_RETURN_TO
    if is_own_path(value):
        return value
    if is_allowed_redirect(value, allowlist):
        return value
    return DEFAULT_RETURN_TO


def is_own_path(value: str) -> bool:
    if not value.isascii() or not value.isprintable() or any(c in value for c in " \\"):
        return False
    if not value.startswith("/") or value.startswith("//"):
        return False
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.fragment:
        return False
    if any(segment in (".", "..") or "%" in segment for segment in parts.path.split("/")):
        return False
    return any(parts.path.startswith(prefix) for prefix in OWN_PREFIXES)


def content_security_policy(logo_url: str | None) -> str:
    images = "'self' data:"
    if logo_url:
        parts = urlsplit(logo_url)
        if parts.scheme == "https" and parts.netloc:
            images += f" https://{parts.netloc}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def add_page_headers(response: web.StreamResponse, logo_url: str | None) -> None:
    response.headers["Content-Security-Policy"] = content_security_policy(logo_url)
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
