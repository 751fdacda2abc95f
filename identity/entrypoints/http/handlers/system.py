"""Health, JWKS and discovery."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any, ClassVar, Literal, Protocol

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.adapters.jwt_tokens import JwtTokenCodec
from identity.application.mail_delivery import DeliverPendingMail
from identity.application.ports import RateLimiter, UnitOfWorkFactory
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import METRICS, SETTINGS
from identity.entrypoints.http.metrics import METRICS_CONTENT_TYPE
from identity.entrypoints.http.problems import RETRY_UNAVAILABLE_SECONDS
from identity.entrypoints.settings import Settings

endpoints = d.Endpoints(tag="system")

HEALTH_DATABASE_TIMEOUT = 1.5  # seconds: /health answers within 2 s even if the database hangs


class StorageProbe(Protocol):
    """``DatabaseProbe`` (SQL) or ``MemoryStoreProbe``, as the container picks."""

    async def ok(self) -> bool: ...


def email_status(settings: Settings, delivery: DeliverPendingMail) -> str:
    if not settings.smtp_host:
        return "log"  # development mailer: an operator should notice it
    return "degraded" if delivery.last_failed else "ok"


@attrs.frozen
class HealthChecks:
    database: Literal["ok", "unavailable"]
    email: Literal["ok", "degraded", "log"] = d.out(
        "`log`: no SMTP host, mail goes to the log (development)"
    )
    rate_limiter: Literal["ok", "degraded"] = d.out()


@attrs.frozen
class Health:
    status: Literal["ok", "unavailable"]
    checks: HealthChecks


@functools.lru_cache(maxsize=64)
def _health_body(database: bool, email: str, rate_limiter: str) -> bytes:
    """The few possible answers, serialised once each."""
    state: Literal["ok", "unavailable"] = "ok" if database else "unavailable"
    checks = HealthChecks(state, email, rate_limiter)  # type: ignore[arg-type]
    return json.dumps(d.serialise(Health(state, checks))).encode()


@endpoints.get(
    "/health",
    operation_id="health",
    summary="Liveness and dependencies",
    description="Not rate limited. The database check is at most one second old "
    "(one probe a second however often this is polled).",
    ok=Health,
    ok_description="Serving.",
    answers=(
        d.Answer(
            503,
            "The database is unreachable.",
            Health,
            headers=(("Retry-After", "seconds to wait"),),
        ),
    ),
    limited=False,
    storage=False,
)
@inject
async def health(
    request: web.Request,
    probe: StorageProbe = Provide[Container.storage_probe],
    limiter: RateLimiter = Provide[Container.rate_limiter],
    delivery: DeliverPendingMail = Provide[Container.deliver_mail],
) -> web.Response:
    database = await probe.ok()
    body = _health_body(database, email_status(request.app[SETTINGS], delivery), limiter.status)
    if not database:
        return web.Response(
            body=body,
            status=503,
            content_type="application/json",
            headers={"Retry-After": str(RETRY_UNAVAILABLE_SECONDS)},
        )
    return web.Response(body=body, content_type="application/json")


@endpoints.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics",
    description="Not rate limited.",
    ok_description="The Prometheus text exposition format.",
    status=200,
    content="text/plain",
    limited=False,
    storage=False,
)
@inject
async def metrics(
    request: web.Request,
    uow: UnitOfWorkFactory = Provide[Container.uow.provider],
) -> web.Response:
    registry = request.app[METRICS]
    try:
        async with asyncio.timeout(HEALTH_DATABASE_TIMEOUT), uow() as unit:
            registry.outbox_depth.set(await unit.outbox.pending_count())
            registry.webhook_depth.set(await unit.webhook_deliveries.pending_count())
    except Exception:
        # Unknown while the database is away.
        registry.outbox_depth.set(float("nan"))
        registry.webhook_depth.set(float("nan"))
    response = web.Response(body=registry.render())
    response.headers["Content-Type"] = METRICS_CONTENT_TYPE
    return response


@attrs.frozen
class Jwk:
    """A public key (members by key type, e.g. `n` and `e` for RSA)."""

    open_ended: ClassVar[bool] = True

    kty: str
    kid: str
    alg: str
    use: Literal["sig"]


@attrs.frozen
class JWKS:
    keys: list[Jwk]


@endpoints.get(
    "/.well-known/jwks.json",
    operation_id="jwks",
    summary="Public keys that verify access tokens",
    ok=JWKS,
    ok_description="The JSON Web Key Set.",
    storage=False,
)
@inject
async def jwks(
    request: web.Request, codec: JwtTokenCodec = Provide[Container.token_codec]
) -> web.Response:
    return web.json_response(codec.keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})


# Endpoints published in the discovery document (RFC 8414 metadata name -> path),
# each added once it exists, e.g. "introspection_endpoint": "/auth/introspect".
DISCOVERY_ENDPOINTS: dict[str, str] = {"introspection_endpoint": "/auth/introspect"}

CLAIMS_SUPPORTED = (
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
)


@attrs.frozen
class OpenIDConfiguration:
    issuer: str = d.out(format="uri")
    jwks_uri: str = d.out(format="uri")
    id_token_signing_alg_values_supported: list[str] = d.out()
    claims_supported: list[str] = d.out()
    introspection_endpoint: str | None = d.out(format="uri", omit_if_none=True)


@endpoints.get(
    "/.well-known/openid-configuration",
    operation_id="openidConfiguration",
    summary="OpenID discovery document",
    ok=OpenIDConfiguration,
    ok_description="The discovery document.",
    storage=False,
)
@inject
async def openid_configuration(
    request: web.Request,
    settings: Settings = Provide[Container.settings],
    codec: JwtTokenCodec = Provide[Container.token_codec],
) -> web.Response:
    """Where a token verifier finds the keys, and nothing it could mistake for OAuth.

    No authorization, token or response-type entries: this service is not an
    OAuth authorization server, and OIDC client libraries would try to run
    flows it does not offer.
    """
    issuer = settings.issuer.rstrip("/")
    document: dict[str, Any] = {
        "issuer": settings.issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        # The algorithms of the keys in the JWKS: what tokens from here are signed with.
        "id_token_signing_alg_values_supported": sorted(
            {key.algorithm for key in codec.keyring.keys}
        ),
        "claims_supported": list(CLAIMS_SUPPORTED),
    }
    for name, path in DISCOVERY_ENDPOINTS.items():
        document[name] = f"{issuer}{path}"
    return web.json_response(document, headers={"Cache-Control": "public, max-age=300"})
