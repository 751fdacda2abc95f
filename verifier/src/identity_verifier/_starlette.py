"""A FastAPI/Starlette dependency (the ``starlette`` extra)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from identity_verifier._bearer import (
    IDENTITY_KEY,
    bearer_token,
    challenge,
    missing_org,
    missing_permission,
)
from identity_verifier._errors import InvalidToken, IssuerUnavailable

if TYPE_CHECKING:
    from identity_verifier._verifier import Verifier

Dependency = Callable[[Request], Awaitable[dict[str, Any]]]


def dependency(
    verifier: Verifier, *, permission: str | None = None, org: bool = False
) -> Dependency:
    async def identity(request: Request) -> dict[str, Any]:
        claims = await _verified(verifier, request)
        reason = (
            missing_permission(claims, permission)
            if permission is not None
            else missing_org(claims)
            if org
            else None
        )
        if reason is not None:
            raise HTTPException(403, detail=reason)
        return claims

    return identity


async def _verified(verifier: Verifier, request: Request) -> dict[str, Any]:
    claims = request.scope.get(IDENTITY_KEY)
    if isinstance(claims, dict):
        return claims  # the ASGI middleware already checked this request
    try:
        claims = await verifier.verify(bearer_token(request.headers.get("Authorization")))
    except InvalidToken as error:
        raise HTTPException(
            401, detail=error.reason, headers={"WWW-Authenticate": challenge(error)}
        ) from None
    except IssuerUnavailable:
        raise HTTPException(
            503, detail="the token could not be checked with its issuer; try again shortly"
        ) from None
    request.scope[IDENTITY_KEY] = claims
    return claims
