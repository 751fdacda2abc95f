"""identity-verifier's ``verify()`` with cached keys vs PyJWT's own EdDSA decode.

    .venv/bin/python bench/verifier.py [--seconds 1.0] [--rounds 5]

Both verify the same Ed25519-signed access token (signature, iss, aud, exp),
in alternating rounds of ``--seconds`` each, in one process; the issuer is
a small aiohttp server on 127.0.0.1 publishing discovery and the JWKS, asked
once (the keys are then cached). Prints the median rate of each and the
ratio (target: verify() at 80% or more of PyJWT's rate). One core is used;
other load on the machine moves both numbers alike, the ratio much less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import socket
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from identity_verifier import Verifier

AUDIENCE = "identity"
KID = "bench-key"


def jwk(public: ed25519.Ed25519PublicKey) -> dict[str, str]:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": KID, "alg": "EdDSA", "use": "sig"}


async def issuer_app(issuer: str, public: ed25519.Ed25519PublicKey) -> web.Application:
    async def discovery(request: web.Request) -> web.Response:
        return web.json_response({"issuer": issuer, "jwks_uri": f"{issuer}/jwks"})

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(
            {"keys": [jwk(public)]}, headers={"Cache-Control": "public, max-age=300"}
        )

    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", discovery)
    app.router.add_get("/jwks", jwks)
    return app


async def rate(call: Callable[[], Awaitable[object]], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            await call()
        done += 200
        now = time.perf_counter()
        if now >= deadline:
            return done / (now - start)


async def main(seconds: float, rounds: int) -> None:
    private = ed25519.Ed25519PrivateKey.generate()
    public = private.public_key()
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))  # the port first: the issuer URL names it
    issuer = f"http://127.0.0.1:{listening.getsockname()[1]}"
    runner = web.AppRunner(await issuer_app(issuer, public), access_log=None)
    await runner.setup()
    await web.SockSite(runner, listening).start()

    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 3600,
        "jti": uuid.uuid4().hex,
        "sid": str(uuid.uuid4()),
        "typ": "access",
        "tid": str(uuid.uuid4()),
        "email": "ada@example.com",
        "email_verified": True,
    }
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": KID, "typ": "JWT"})

    async def pyjwt_decode() -> object:
        return jwt.decode(token, public, algorithms=["EdDSA"], audience=AUDIENCE, issuer=issuer)

    async with Verifier(issuer, AUDIENCE) as verifier:
        assert (await verifier.verify(token))["sub"] == claims["sub"]  # fetches the keys
        assert await pyjwt_decode() == await verifier.verify(token)
        baseline: list[float] = []
        ours: list[float] = []
        for _ in range(rounds):
            baseline.append(await rate(pyjwt_decode, seconds))
            ours.append(await rate(lambda: verifier.verify(token), seconds))
        fetches = verifier.keys.fetches
    await runner.cleanup()

    base, mine = statistics.median(baseline), statistics.median(ours)
    print(f"PyJWT jwt.decode (EdDSA):     {base:10,.0f} /s  (rounds: {fmt(baseline)})")
    print(f"Verifier.verify (keys cached): {mine:9,.0f} /s  (rounds: {fmt(ours)})")
    print(f"ratio: {mine / base:.1%} of PyJWT (target >= 80%); JWKS fetches: {fetches}")


def fmt(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each, alternating")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.rounds))
