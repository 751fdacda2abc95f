"""``Verifier``: checks identity's access tokens in the services behind it."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import jwt

from identity_verifier._errors import InsufficientScope, InvalidToken
from identity_verifier._http import FETCH_TIMEOUT
from identity_verifier._introspection import Introspection
from identity_verifier._keys import ALGORITHMS, KeyCache

if TYPE_CHECKING:
    from aiohttp.typedefs import Middleware

    from identity_verifier._asgi import AsgiMiddlewareFactory
    from identity_verifier._starlette import Dependency

DEFAULT_INTROSPECTION_TTL: Final = 5.0
_REQUIRED: Final = ["iss", "aud", "sub", "exp"]
_MAX_KID_LENGTH: Final = 256
_AT_JWT: Final = frozenset({"at+jwt", "application/at+jwt"})

# Fixed, short reasons: PyJWT's own messages never reach a caller.
_REASONS: Final[Mapping[type[jwt.PyJWTError], str]] = {
    jwt.ExpiredSignatureError: "token expired",
    jwt.ImmatureSignatureError: "token not yet valid",
    jwt.InvalidAudienceError: "wrong audience",
    jwt.InvalidIssuerError: "wrong issuer",
    jwt.InvalidSignatureError: "bad signature",
    jwt.MissingRequiredClaimError: "missing claim",
    jwt.InvalidAlgorithmError: "algorithm not allowed",
}


def _reason(error: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS.items():
        if isinstance(error, kind):
            return reason
    return "malformed token"


def _header(token: str) -> dict[str, Any]:
    # Only the first segment, to pick the key; jwt.decode then parses the whole
    # token strictly and has the last word on its form.
    segment = token.partition(".")[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError, RecursionError):
        raise InvalidToken("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidToken("malformed token")
    return header


def require_scope(claims: Mapping[str, Any], *scopes: str) -> None:
    """Raise ``InsufficientScope`` (a 403, RFC 6750) unless ``claims["scope"]`` (space
    separated, RFC 9068) holds every one of ``scopes``."""
    granted = claims.get("scope")
    held = set(granted.split()) if isinstance(granted, str) else set()
    missing = [scope for scope in scopes if scope not in held]
    if missing:
        raise InsufficientScope(missing)


class Verifier:
    """Verifies access tokens issued by the identity service at ``issuer``.

    ``await verify(token)`` returns the token's claims or raises
    ``InvalidToken``: signature by a key in the issuer's JWKS (found through
    ``{issuer}/.well-known/openid-configuration``), algorithm ``EdDSA`` or
    ``RS256`` only, ``iss``, ``aud``, ``exp``, ``nbf`` (with ``leeway``
    seconds), ``typ == "access"`` (or an RFC 9068 ``at+jwt`` token of an OAuth
    client, with ``client_id``; its ``acr`` is its assurance level), and when
    asked ``tid == tenant`` and ``aal == "aal2"``. With
    ``introspect_with=API_KEY`` (a key with scope ``tokens:introspect``) every
    token is also checked with the issuer's introspection endpoint, each
    answer reused for ``introspection_ttl`` seconds, so a logout or a
    disabled account is seen within that time.

    ``IssuerUnavailable`` is raised when the token cannot be judged: no key
    set could ever be fetched, or introspection failed. ``session`` is an
    ``aiohttp.ClientSession`` to use (else one is made and ``close()`` ends
    it); ``clock`` (monotonic seconds) is for tests. Use one verifier per
    event loop.
    """

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        tenant: str | None = None,
        leeway: float = 30,
        require_aal2: bool = False,
        introspect_with: str | None = None,
        session: aiohttp.ClientSession | None = None,
        introspection_ttl: float = DEFAULT_INTROSPECTION_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not issuer.startswith(("https://", "http://")):
            raise ValueError("issuer must be an http(s) URL")
        if leeway < 0 or introspection_ttl < 0:
            raise ValueError("leeway and introspection_ttl cannot be negative")
        self.issuer = issuer
        self.audience = audience
        self.tenant = tenant
        self.leeway = leeway
        self.require_aal2 = require_aal2
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self.keys = KeyCache(issuer, self._http, clock)
        self.introspection = (
            Introspection(
                introspect_with,
                introspection_ttl,
                self.keys.introspection_endpoint,
                self._http,
                clock,
            )
            if introspect_with
            else None
        )

    def __repr__(self) -> str:
        return (
            f"Verifier(issuer={self.issuer!r}, audience={self.audience!r}, "
            f"tenant={self.tenant!r}, introspection={self.introspection is not None})"
        )

    async def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid access token; ``InvalidToken`` otherwise."""
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken("malformed token")
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        # The algorithm is never taken on trust: "none", HS256 keyed with the
        # public key and the like stop here, before any key is looked up.
        if algorithm not in ALGORITHMS:
            raise InvalidToken("algorithm not allowed")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_LENGTH:
            raise InvalidToken("token names no signing key")
        key = self.keys.cached(kid) or await self.keys.get(kid)
        if key.algorithm != algorithm:
            raise InvalidToken("algorithm not allowed")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as error:
            raise InvalidToken(_reason(error)) from None
        except (ValueError, TypeError, RecursionError):
            raise InvalidToken("malformed token") from None
        # An RFC 9068 access token of an OAuth client (header typ at+jwt, with
        # client_id), or an access token of identity's own API (claim typ access).
        oauth = str(header.get("typ", "")).lower() in _AT_JWT
        if oauth:
            if not isinstance(claims.get("client_id"), str) or "typ" in claims:
                raise InvalidToken("not an access token")
        elif claims.get("typ") != "access":
            raise InvalidToken("not an access token")
        if self.tenant is not None and claims.get("tid") != self.tenant:
            raise InvalidToken("token of another tenant")
        level = claims.get("acr") if oauth else claims.get("aal")
        if self.require_aal2 and level != "aal2":
            raise InvalidToken("multi-factor authentication (aal2) required")
        if self.introspection is not None and not await self.introspection.active(token):
            raise InvalidToken("token is no longer active")
        return claims

    @staticmethod
    def require_scope(claims: Mapping[str, Any], *scopes: str) -> None:
        """Raise ``InsufficientScope`` unless the token's ``scope`` holds every one of
        ``scopes`` (an OAuth client's access token; identity's own tokens carry none)."""
        require_scope(claims, *scopes)

    def aiohttp_middleware(self, *, public: Collection[str] = ()) -> Middleware:
        """aiohttp middleware: ``request["identity"]`` = claims, else 401 (503 if
        the issuer cannot be asked). Paths in ``public`` pass unchecked."""
        from identity_verifier._aiohttp import middleware

        return middleware(self, frozenset(public))

    def asgi_middleware(self, *, public: Collection[str] = ()) -> AsgiMiddlewareFactory:
        """For Starlette/FastAPI's ``app.add_middleware(...)`` (or any ASGI app:
        ``verifier.asgi_middleware()(app)``): ``scope["identity"]`` = claims,
        else 401. Paths in ``public`` pass unchecked."""
        from identity_verifier._asgi import AsgiMiddlewareFactory

        return AsgiMiddlewareFactory(self, frozenset(public))

    def dependency(
        self, *, require_permission: str | None = None, require_org: bool = False
    ) -> Dependency:
        """A FastAPI dependency giving the claims: ``Depends(verifier.dependency())``.

        Reuses the claims the ASGI middleware found, else verifies the bearer
        token itself; raises Starlette's ``HTTPException`` (401/503). With
        ``require_permission="invoices:read"`` the token's ``permissions`` must
        hold it, with ``require_org=True`` it must act in an organization
        (``org_id``): 403 otherwise. Needs the ``starlette`` extra.
        """
        from identity_verifier._starlette import dependency

        if require_permission is not None and not require_permission:
            raise ValueError("require_permission must be a non-empty string")
        return dependency(self, permission=require_permission, org=require_org)

    async def close(self) -> None:
        """Stop fetches in flight and close the HTTP session made here."""
        await self.keys.close()
        if self.introspection is not None:
            await self.introspection.close()
        if self._own_session is not None:
            await self._own_session.close()
            self._own_session = None

    async def __aenter__(self) -> Verifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._own_session is None or self._own_session.closed:
            # Made lazily: a ClientSession belongs to the loop it is made in.
            self._own_session = aiohttp.ClientSession(
                timeout=FETCH_TIMEOUT, headers={"User-Agent": "identity-verifier"}
            )
        return self._own_session
