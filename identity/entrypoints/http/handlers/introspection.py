"""``POST /auth/introspect`` (RFC 7662) for the services behind identity."""

from __future__ import annotations

from typing import Annotated

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.introspection import Introspect, IntrospectToken
from identity.domain.api_keys import Scope
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.middlewares import MAX_BODY_BYTES

endpoints = d.Endpoints(tag="sessions")


@attrs.frozen
class IntrospectBody:
    # Bounded by the body limit only: any string that is not a good token is
    # an answer ({"active": false}), not a request error.
    token: Annotated[str, d.Text("the token to check", max_length=MAX_BODY_BYTES)]


@attrs.frozen
class IntrospectionView:
    """RFC 7662 answer: every member but `active` is present only when it is true."""

    active: bool = d.out("whether the token is an access token of this tenant in a live session")
    sub: str | None = d.out("the user's id", omit_if_none=True)
    tid: str | None = d.out("the tenant's id", omit_if_none=True)
    sid: str | None = d.out("the session's id", omit_if_none=True)
    exp: int | None = d.out("expiry, seconds since the epoch", omit_if_none=True)
    iat: int | None = d.out("issue time, seconds since the epoch", omit_if_none=True)
    aal: str | None = d.out("authentication assurance level: aal1 or aal2", omit_if_none=True)
    amr: list[str] | None = d.out("authentication methods (RFC 8176)", omit_if_none=True)
    email: str | None = d.out("the user's email", omit_if_none=True)
    token_type: str | None = d.out("always `access`", omit_if_none=True)


INACTIVE = IntrospectionView(active=False)


@endpoints.post(
    "/auth/introspect",
    summary="Introspect a token (RFC 7662)",
    description="Form (`token=...`) or JSON body. Anything but a live access token of the "
    "API key's tenant (a refresh token, another tenant's token, an ended session, a "
    'disabled account, junk) is answered `{"active": false}`.',
    body=IntrospectBody,
    forms=True,
    ok=IntrospectionView,
    auth=d.api_key(Scope.TOKENS_INTROSPECT),
)
@inject
async def introspect(
    request: web.Request,
    body: IntrospectBody,
    use_case: Introspect = Provide[Container.introspect],
) -> IntrospectionView:
    result = await use_case(IntrospectToken(request_tenant(request), body.token))
    claims = result.claims
    if claims is None:
        return INACTIVE
    return IntrospectionView(
        active=True,
        sub=str(claims.subject),
        tid=str(claims.tenant_id),
        sid=str(claims.session_id),
        exp=int(claims.expires_at.timestamp()),
        iat=int(claims.issued_at.timestamp()),
        aal=claims.aal,
        amr=list(claims.amr),
        email=claims.email,
        token_type="access",
    )
