"""Who is calling: an access token becomes a user principal, an API key a service principal.

Handlers never parse credentials themselves; the declared ``auth`` of an
endpoint (``declare.BEARER``, ``declare.api_key(scope)``) calls these.
"""

from __future__ import annotations

from aiohttp import web

from identity.application import sessions
from identity.application.api_keys import AuthenticateApiKey, ServicePrincipal
from identity.application.tenancy import ResolveTenant
from identity.domain.api_keys import InsufficientScopeError, InvalidApiKeyError, Scope
from identity.domain.errors import InvalidTokenError, TenantNotFoundError
from identity.entrypoints.http.keys import SERVICE, TENANT, USER, request_tenant
from identity.entrypoints.http.problems import Problem

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
API_KEY_PREFIX = "idk_"


def _invalid_bearer() -> Problem:
    return Problem.of(
        "invalid_token",
        "The access token is missing, malformed, expired or revoked.",
        headers=_BEARER_CHALLENGE,
    )


def invalid_api_key() -> Problem:
    return Problem.of(
        "invalid_api_key",
        "The API key is missing, malformed, unknown or revoked.",
        headers={"WWW-Authenticate": 'Bearer realm="identity-admin"'},
    )


def insufficient_scope(detail: str) -> Problem:
    return Problem.of("insufficient_scope", detail)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


async def authenticated(
    request: web.Request, authenticate: sessions.Authenticate
) -> sessions.Principal:
    token = _bearer(request)
    if token is None:
        raise _invalid_bearer()
    try:
        principal = await authenticate(request_tenant(request), token)
    except InvalidTokenError:
        raise _invalid_bearer() from None
    request[USER] = principal
    return principal


async def authenticated_service(
    request: web.Request,
    scope: Scope,
    authenticate: AuthenticateApiKey,
    resolve_tenant: ResolveTenant,
) -> ServicePrincipal:
    """The key's principal; its tenant becomes the request's tenant.

    An ``X-Tenant`` header naming another tenant (or none: empty) is refused: a
    key acts on its own tenant only.
    """
    token = _bearer(request)
    if token is None or not token.startswith(API_KEY_PREFIX):
        raise invalid_api_key()
    try:
        principal = await authenticate(token)
        tenant = await resolve_tenant.by_id(principal.tenant_id)
    except (InvalidApiKeyError, TenantNotFoundError):
        raise invalid_api_key() from None
    asked = request.headers.get("X-Tenant")
    # Present, the header must name the key's tenant: an empty one names none.
    if asked is not None and asked.strip().lower() != tenant.slug:
        raise insufficient_scope("An API key acts on its own tenant only.")
    try:
        principal.require(scope)
    except InsufficientScopeError:
        raise insufficient_scope(f"This API key lacks the scope {scope.value}.") from None
    request[TENANT] = tenant
    request[SERVICE] = principal
    return principal


def user(request: web.Request) -> sessions.Principal:
    """The user behind the request's access token (an endpoint declared with ``BEARER``)."""
    return request[USER]


def service(request: web.Request) -> ServicePrincipal:
    """The service behind the request's API key (an endpoint declared with ``api_key``)."""
    return request[SERVICE]
