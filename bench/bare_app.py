"""The reference for ``bench/health.py`` and ``bench/edge.py``: a bare aiohttp + uvloop app.

.venv/bin/python bench/bare_app.py PORT [DATABASE_URL]

``GET /health`` answers a constant JSON body. With a database URL,
``GET /auth/me`` does what identity's ``/auth/me`` must do at the least: the
same one asyncpg read of the session joined to its account (identity's own
statement, compiled once), then a JSON body of the user. The bearer token's
claims are read without checking the signature: the reference has no
middleware, no key ring, no metrics and no log.
"""

from __future__ import annotations

import base64
import json
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import uvloop
from aiohttp import web

BODY = b'{"status": "ok"}'
POOL = web.AppKey("pool", asyncpg.Pool)
SQL = web.AppKey("sql", str)
ORDER = web.AppKey("order", list)


async def health(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json")


def _claims(request: web.Request) -> dict[str, str]:
    token = request.headers["Authorization"].removeprefix("Bearer ")
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))  # type: ignore[no-any-return]


async def me(request: web.Request) -> web.Response:
    claims = _claims(request)
    params = {
        "session_id": uuid.UUID(claims["sid"]),
        "tenant_id": uuid.UUID(claims["tid"]),
        "account_id": uuid.UUID(claims["sub"]),
        "now": datetime.now(UTC),
    }
    async with request.app[POOL].acquire() as connection:
        row = await connection.fetchrow(
            request.app[SQL], *[params[name] for name in request.app[ORDER]]
        )
    if row is None:
        return web.json_response({"code": "invalid_token"}, status=401)
    body = {
        "id": str(row["id"]),
        "email": row["email"],
        "full_name": row["full_name"],
        "is_verified": row["is_verified"],
        "created_at": row["created_at"].isoformat(),
    }
    return web.json_response(body)


def _compiled() -> tuple[str, list[str]]:
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    from identity.adapters.sqlalchemy.reads import _ACCOUNT_FOR_SESSION

    compiled = _ACCOUNT_FOR_SESSION.compile(dialect=dialect())
    assert compiled.positiontup is not None
    return compiled.string, list(compiled.positiontup)


def main() -> None:
    app = web.Application()
    app.router.add_get("/health", health)
    if len(sys.argv) > 2:
        dsn = sys.argv[2].replace("postgresql+asyncpg://", "postgresql://")
        app[SQL], app[ORDER] = _compiled()

        async def pool(app: web.Application):  # type: ignore[no-untyped-def]
            app[POOL] = await asyncpg.create_pool(dsn, min_size=4, max_size=10)
            yield
            await app[POOL].close()

        app.cleanup_ctx.append(pool)
        app.router.add_get("/auth/me", me)
    web.run_app(
        app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
        loop=uvloop.new_event_loop(),
    )  # fmt: skip


if __name__ == "__main__":
    main()
