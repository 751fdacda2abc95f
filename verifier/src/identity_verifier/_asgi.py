"""ASGI middleware (Starlette, FastAPI, or any ASGI app); needs no framework."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from identity_verifier._bearer import IDENTITY_KEY, bearer_token, refusal
from identity_verifier._errors import InvalidToken, IssuerUnavailable

if TYPE_CHECKING:
    from identity_verifier._verifier import Verifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 6455 "policy violation": a WebSocket refused for its credentials.
WEBSOCKET_POLICY_VIOLATION = 1008


def _authorization(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            return bytes(value).decode("latin-1")
    return None


class AsgiMiddleware:
    def __init__(self, app: App, verifier: Verifier, public: frozenset[str]) -> None:
        self.app = app
        self._verifier = verifier
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in self._public:
            await self.app(scope, receive, send)
            return
        try:
            token = bearer_token(_authorization(scope))
            claims = await self._verifier.verify(token)
        except (InvalidToken, IssuerUnavailable) as error:
            await self._refuse(scope, send, error)
            return
        scope[IDENTITY_KEY] = claims
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, error: InvalidToken | IssuerUnavailable) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        status, headers, body = refusal(error)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in headers.items()
                ]
                + [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class AsgiMiddlewareFactory:
    """What ``app.add_middleware`` takes: called with the app it wraps."""

    def __init__(self, verifier: Verifier, public: frozenset[str]) -> None:
        self._verifier = verifier
        self._public = public

    def __call__(self, app: App) -> AsgiMiddleware:
        return AsgiMiddleware(app, self._verifier, self._public)
