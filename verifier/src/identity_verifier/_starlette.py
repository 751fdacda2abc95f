"""A FastAPI/Starlette dependency (the ``starlette`` extra)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from identity_verifier._bearer import IDENTITY_KEY, bearer_token, challenge
from identity_verifier._errors import InvalidToken, IssuerUnavailable

if TYPE_CHECKING:
    from identity_verifier._verifier import Verifier

Dependency = Callable[[Request], Awaitable[dict[str, Any]]]


def dependency(verifier: Verifier) -> Dependency:
    async def identity(request: Request) -> dict[str, Any]:
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

    return identity
