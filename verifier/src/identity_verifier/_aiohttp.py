"""aiohttp middleware."""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from identity_verifier._bearer import IDENTITY_KEY, bearer_token, refusal
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
