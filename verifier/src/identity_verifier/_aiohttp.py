"""aiohttp middleware."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from identity_verifier._bearer import (
    IDENTITY_KEY,
    bearer_token,
    forbidden,
    missing_org,
    missing_permission,
    refusal,
)
from identity_verifier._errors import InvalidToken, IssuerUnavailable

if TYPE_CHECKING:
    from identity_verifier._verifier import Verifier

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


_NOT_A_KEY_WARNING: type[Warning] = getattr(web, "NotAppKeyWarning", UserWarning)
_stored_once = False


def _store(request: web.Request, claims: dict[str, Any]) -> None:
    # The contract's plain "identity" key: aiohttp warns once per process that it
    # prefers typed keys; that one warning says nothing to the app's owner.
    global _stored_once
    if _stored_once:
        request[IDENTITY_KEY] = claims
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _NOT_A_KEY_WARNING)
        request[IDENTITY_KEY] = claims
    _stored_once = True


def middleware(verifier: Verifier, public: frozenset[str]) -> Middleware:
    @web.middleware
    async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in public:
            return await handler(request)
        try:
            token = bearer_token(request.headers.get("Authorization"))
            claims = await verifier.verify(token)
        except (InvalidToken, IssuerUnavailable) as error:
            status, headers, body = refusal(error)
            return web.Response(status=status, headers=headers, body=body)
        _store(request, claims)
        return await handler(request)

    return identity


# --- organization checks (section 19) ---------------------------------------------------

AiohttpHandler = Callable[..., Awaitable[web.StreamResponse]]


def _claims(request: web.Request) -> dict[str, Any] | None:
    claims = request.get(IDENTITY_KEY)
    return claims if isinstance(claims, dict) else None


Decorator = Callable[[AiohttpHandler], AiohttpHandler]


def _guard(check: Callable[[dict[str, Any]], str | None]) -> Decorator:
    def decorate(handler: AiohttpHandler) -> AiohttpHandler:
        @functools.wraps(handler)
        async def guarded(request: web.Request, *args: Any, **kwargs: Any) -> web.StreamResponse:
            claims = _claims(request)
            if claims is None:
                # The middleware did not run for this path (a public one): no identity.
                status, headers, body = refusal(InvalidToken("missing bearer token"))
                return web.Response(status=status, headers=headers, body=body)
            problem = check(claims)
            if problem is not None:
                status, headers, body = forbidden(problem)
                return web.Response(status=status, headers=headers, body=body)
            return await handler(request, *args, **kwargs)

        return guarded

    return decorate


def require_permission(permission: str) -> Decorator:
    """Decorate an aiohttp handler behind the verifier's middleware: 403 unless the
    token's ``permissions`` (the roles' of its organization) hold ``permission``."""
    if not isinstance(permission, str) or not permission:
        raise ValueError("permission must be a non-empty string")
    return _guard(lambda claims: missing_permission(claims, permission))


def require_org() -> Decorator:
    """Decorate an aiohttp handler behind the verifier's middleware: 403 unless the
    token acts in an organization (``org_id``; switch with
    ``POST /auth/organizations/{id}/switch``)."""
    return _guard(missing_org)
