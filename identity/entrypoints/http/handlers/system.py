"""Health, JWKS and discovery."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from dependency_injector.wiring import Provide, inject
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.application.mail_delivery import DeliverPendingMail
from identity.application.ports import RateLimiter, UnitOfWorkFactory
from identity.entrypoints.container import Container
from identity.entrypoints.http.keys import METRICS, SETTINGS
from identity.entrypoints.http.metrics import METRICS_CONTENT_TYPE
from identity.entrypoints.settings import Settings

routes = web.RouteTableDef()

_PING = text("SELECT 1")
HEALTH_DATABASE_TIMEOUT = 1.5  # seconds: /health answers within 2 s even if the database hangs


async def database_ok(engine: AsyncEngine) -> bool:
    async def ping() -> None:
        async with engine.connect() as connection:
            # One round trip: no BEGIN/ROLLBACK around the probe.
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(_PING)

    try:
        await asyncio.wait_for(ping(), HEALTH_DATABASE_TIMEOUT)
    except Exception:
        return False
    return True


def email_status(settings: Settings, delivery: DeliverPendingMail) -> str:
    if not settings.smtp_host:
        return "log"  # development mailer: an operator should notice it
    return "degraded" if delivery.last_failed else "ok"


@routes.get("/health")
@inject
async def health(
    request: web.Request,
    engine: AsyncEngine = Provide[Container.engine],
    limiter: RateLimiter = Provide[Container.rate_limiter],
    delivery: DeliverPendingMail = Provide[Container.deliver_mail],
) -> web.Response:
    database = await database_ok(engine)
    checks = {
        "database": "ok" if database else "unavailable",
        "email": email_status(request.app[SETTINGS], delivery),
        "rate_limiter": getattr(limiter, "status", "ok"),
    }
    if not database:
        return web.json_response({"status": "unavailable", "checks": checks}, status=503)
    return web.json_response({"status": "ok", "checks": checks})


@routes.get("/metrics")
@inject
async def metrics(
    request: web.Request,
    uow: UnitOfWorkFactory = Provide[Container.uow.provider],
) -> web.Response:
    registry = request.app[METRICS]
    try:
        async with asyncio.timeout(HEALTH_DATABASE_TIMEOUT), uow() as unit:
            registry.outbox_depth.set(await unit.outbox.pending_count())
    except Exception:
        registry.outbox_depth.set(float("nan"))  # unknown while the database is away
    response = web.Response(body=registry.render())
    response.headers["Content-Type"] = METRICS_CONTENT_TYPE
    return response


@routes.get("/.well-known/jwks.json")
@inject
async def jwks(
    request: web.Request, codec: JwtTokenCodec = Provide[Container.token_codec]
) -> web.Response:
    return web.json_response(codec.keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})


@routes.get("/.well-known/openid-configuration")
@inject
async def openid_configuration(
    request: web.Request,
    settings: Settings = Provide[Container.settings],
    codec: JwtTokenCodec = Provide[Container.token_codec],
) -> web.Response:
    issuer = settings.issuer.rstrip("/")
    document: dict[str, Any] = {
        "issuer": settings.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": sorted(
            {key.algorithm for key in codec.keyring.keys}
        ),
        "token_endpoint": f"{issuer}/auth/login",
        "introspection_endpoint": f"{issuer}/auth/introspect",
        "subject_types_supported": ["public"],
        "response_types_supported": ["token"],
        "claims_supported": [
            "iss",
            "aud",
            "sub",
            "iat",
            "exp",
            "jti",
            "sid",
            "typ",
            "tid",
            "email",
            "email_verified",
        ],
    }
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})
