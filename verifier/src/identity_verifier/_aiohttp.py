"""aiohttp middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from identity_verifier._bearer import IDENTITY_KEY, bearer_token, refusal
from identity_verifier._errors import InvalidToken, IssuerUnavailable

if TYPE_CHECKING:
    from identity_verifier._verifier import Verifier

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


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
        request[IDENTITY_KEY] = claims
        return await handler(request)

    return identity
