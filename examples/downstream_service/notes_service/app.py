"""Notes, kept per user; every route but /health wants an identity access token.

Tokens are checked by ``identity-verifier``: the signature against identity's
JWKS (found through its discovery document, fetched again when a token names
an unknown key, as after a key rotation), then issuer, audience, expiry and
type. A refresh token is not an access token and is refused.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from identity_verifier import Verifier

NOTES = web.AppKey("notes", dict[str, list[str]])


def signed_in(request: web.Request) -> dict[str, Any]:
    claims: dict[str, Any] = request["identity"]  # set by the verifier's middleware
    return claims


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_notes(request: web.Request) -> web.Response:
    user = signed_in(request)
    notes = request.app[NOTES].get(user["sub"], [])
    return web.json_response({"owner": user["sub"], "email": user["email"], "notes": notes})


async def add_note(request: web.Request) -> web.Response:
    user = signed_in(request)
    body = await request.json()
    request.app[NOTES].setdefault(user["sub"], []).append(str(body["text"]))
    return web.json_response({"added": body["text"]}, status=201)


def create_app(*, issuer: str, audience: str = "identity") -> web.Application:
    verifier = Verifier(issuer=issuer, audience=audience)
    app = web.Application(middlewares=[verifier.aiohttp_middleware(public={"/health"})])
    app[NOTES] = {}

    async def close_verifier(_app: web.Application) -> None:
        await verifier.close()

    app.on_cleanup.append(close_verifier)
    app.router.add_get("/health", health)
    app.router.add_get("/notes", list_notes)
    app.router.add_post("/notes", add_note)
    return app
