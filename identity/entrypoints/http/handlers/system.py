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
from identity.domain.oauth import OPENID_SCOPES
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
    "name",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "client_id",
    "scope",
)
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def discovery_document(settings: Settings, codec: JwtTokenCodec) -> dict[str, Any]:
    """RFC 8414 / OpenID Connect Discovery 1.0 metadata: one document for both names."""
    issuer = settings.issuer.rstrip("/")
    document: dict[str, Any] = {
        "issuer": settings.issuer,
        "authorization_endpoint": f"{issuer}/oauth2/authorize",
        "token_endpoint": f"{issuer}/oauth2/token",
        "userinfo_endpoint": f"{issuer}/oauth2/userinfo",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "end_session_endpoint": f"{issuer}/oauth2/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "ES256", "EdDSA", "PS256"],
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": [*AUTH_METHODS[:3], "bearer"],
        "scopes_supported": list(OPENID_SCOPES),
        "claims_supported": list(CLAIMS_SUPPORTED),
        "subject_types_supported": ["public"],
        # The algorithms of the keys in the JWKS: ID tokens per client (RS256 by default).
        "id_token_signing_alg_values_supported": sorted(codec.keyring.algorithms),
        "prompt_values_supported": ["none", "login", "consent"],
        "authorization_response_iss_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "claims_parameter_supported": False,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
    }
    if settings.oauth_registration != "off":
        document["registration_endpoint"] = f"{issuer}/oauth2/register"
    return document


def _metadata(settings: Settings, codec: JwtTokenCodec) -> web.Response:
    return web.json_response(
        discovery_document(settings, codec), headers={"Cache-Control": "public, max-age=300"}
    )


@endpoints.get(
    "/.well-known/openid-configuration",
    operation_id="openidConfiguration",
    summary="OpenID Provider metadata (OpenID Connect Discovery 1.0)",
    ok_description="The authorization server's metadata: the same document as RFC 8414's.",
    content="application/json",
    storage=False,
)
@inject
async def openid_configuration(
    request: web.Request,
    settings: Settings = Provide[Container.settings],
    codec: JwtTokenCodec = Provide[Container.token_codec],
) -> web.Response:
    return _metadata(settings, codec)


@endpoints.get(
    "/.well-known/oauth-authorization-server",
    operation_id="oauthAuthorizationServer",
    summary="Authorization server metadata (RFC 8414)",
    ok_description="The authorization server's metadata: the same document as OpenID's.",
    content="application/json",
    storage=False,
)
@inject
async def oauth_authorization_server(
    request: web.Request,
    settings: Settings = Provide[Container.settings],
    codec: JwtTokenCodec = Provide[Container.token_codec],
) -> web.Response:
    return _metadata(settings, codec)
