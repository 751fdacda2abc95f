"""Notes, kept per user; every route but /health wants an identity access token.

Tokens are checked offline: signature against identity's JWKS (fetched once,
fetched again when a token names an unknown key, as after a key rotation),
then issuer, audience, expiry and type. A refresh token is not an access
token and is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
from aiohttp import web

ALGORITHMS = ["EdDSA", "RS256"]


class Unauthorized(Exception):
    pass


class TokenVerifier:
    def __init__(self, jwks_url: str, issuer: str, audience: str) -> None:
        self._jwks_url = jwks_url
        self._issuer = issuer
        self._audience = audience
        self._keys: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def claims(self, token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthorized("malformed token") from None
        if kid not in self._keys:
            await self._fetch_keys()
        key = self._keys.get(kid)
        if key is None:
            raise Unauthorized("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iat", "sub", "typ"]},
            )
        except jwt.PyJWTError as error:
            raise Unauthorized(type(error).__name__) from None
        if claims["typ"] != "access":
            raise Unauthorized("not an access token")
        return claims

    async def _fetch_keys(self) -> None:
        assert self._http is not None, "start() first"
        async with self._http.get(self._jwks_url) as response:
            response.raise_for_status()
            jwks = await response.json()
        self._keys = {key.key_id: key.key for key in jwt.PyJWKSet.from_dict(jwks).keys}


VERIFIER = web.AppKey("verifier", TokenVerifier)
NOTES = web.AppKey("notes", dict[str, list[str]])


async def signed_in(request: web.Request) -> dict[str, Any]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise web.HTTPUnauthorized(text="sign in with identity first")
    try:
        return await request.app[VERIFIER].claims(token)
    except Unauthorized:
        raise web.HTTPUnauthorized(text="invalid token") from None


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def list_notes(request: web.Request) -> web.Response:
    user = await signed_in(request)
    notes = request.app[NOTES].get(user["sub"], [])
    return web.json_response({"owner": user["sub"], "email": user["email"], "notes": notes})


async def add_note(request: web.Request) -> web.Response:
    user = await signed_in(request)
    body = await request.json()
    request.app[NOTES].setdefault(user["sub"], []).append(str(body["text"]))
    return web.json_response({"added": body["text"]}, status=201)


def create_app(*, jwks_url: str, issuer: str, audience: str = "identity") -> web.Application:
    app = web.Application()
    app[VERIFIER] = TokenVerifier(jwks_url, issuer, audience)
    app[NOTES] = {}

    async def verifier(app: web.Application) -> AsyncIterator[None]:
        await app[VERIFIER].start()
        yield
        await app[VERIFIER].close()

    app.cleanup_ctx.append(verifier)
    app.router.add_get("/health", health)
    app.router.add_get("/notes", list_notes)
    app.router.add_post("/notes", add_note)
    return app
