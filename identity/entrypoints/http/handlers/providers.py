"""Sign-in with any configured provider, and the signed-in user's linked identities.

Every provider runs one flow: ``/login`` sets a cookie scoped to the provider's
callback path and redirects; the callback answers tokens (or a redirect with
them in the fragment), or, for a flow started by ``POST
/auth/identities/{provider}/link``, the new link.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import external_sign_in as sign_in
from identity.application import sessions
from identity.application.tokens import TokenPair
from identity.domain.accounts import Account
from identity.domain.errors import DomainError, ProviderNotConfiguredError
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.identities import RESERVED_PROVIDER_NAMES
from identity.entrypoints.container import Container
from identity.entrypoints.http.handlers.sessions import authenticated
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import problem_for, problem_response
from identity.entrypoints.http.views import client_info, iso, token_view

routes = web.RouteTableDef()

COOKIE = "identity_oauth"


def callback_path(provider: str) -> str:
    """Our callback path of ``provider`` (the cookie of its flows is scoped to it)."""
    if provider in RESERVED_PROVIDER_NAMES:
        return f"/auth/{provider}/callback"
    return f"/auth/oidc/{provider}/callback"


async def start_flow(
    request: web.Request,
    provider: str,
    use_case: sign_in.StartExternalSignIn,
    *,
    link_to: Account | None = None,
) -> web.Response:
    """Open the flow; a sign-in answers 302 to the provider, a link 200 with the URL."""
    command = sign_in.StartSignIn(
        tenant=request_tenant(request),
        redirect_to=request.query.get("redirect_to"),
        provider=provider,
        link_to=link_to,
    )
    started = await use_case(command)
    if link_to is None:
        response = web.Response(status=302, headers={"Location": started.authorization_url})
    else:
        response = web.json_response({"authorization_url": started.authorization_url})
    response.set_cookie(
        COOKIE,
        started.browser_binding,
        max_age=started.max_age_seconds,
        path=callback_path(provider),
        httponly=True,
        samesite="Lax",  # sent on the top-level redirect back from the provider
        secure=started.redirect_uri.startswith("https://"),
    )
    return response


async def finish_flow(
    request: web.Request, provider: str, use_case: sign_in.FinishExternalSignIn
) -> web.Response:
    query = request.query
    command = sign_in.FinishSignIn(
        tenant=request_tenant(request),
        browser_binding=request.cookies.get(COOKIE),
        state=query.get("state"),
        code=query.get("code"),
        error=query.get("error"),
        client=client_info(request),
        provider=provider,
    )
    try:
        result = await use_case(command)
    except DomainError as error:
        problem = problem_for(error)
        if problem is None:
            raise
        response = problem_response(problem)
    else:
        response = _finished(result)
    # The pending sign-in is spent whatever the outcome.
    response.del_cookie(COOKIE, path=callback_path(provider))
    return response


def _finished(result: sign_in.SignedIn | sign_in.Linked) -> web.Response:
    if isinstance(result, sign_in.Linked):
        if result.redirect_to is None:
            return web.json_response(identity_view(result.link))
        fragment = urlencode({"linked": result.link.provider})
        return web.Response(status=302, headers={"Location": f"{result.redirect_to}#{fragment}"})
    if result.redirect_to is None:
        return web.json_response(token_view(result.tokens))
    # The fragment never reaches a server, so the tokens stay out of access logs
    # and Referer headers.
    location = f"{result.redirect_to}#{urlencode(_fragment(result.tokens))}"
    return web.Response(status=302, headers={"Location": location})


def _fragment(pair: TokenPair) -> dict[str, str]:
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": str(pair.expires_in),
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": str(pair.refresh_token_expires_in),
    }


def identity_view(link: LinkedIdentity) -> dict[str, Any]:
    return {
        "provider": link.provider,
        "email": link.email_at_link,
        "linked_at": iso(link.created_at),
    }


def _oidc_name(request: web.Request) -> str:
    name = request.match_info["provider"]
    if name in RESERVED_PROVIDER_NAMES:
        # Google and GitHub have paths of their own.
        raise ProviderNotConfiguredError(name)
    return name


@routes.get("/auth/oidc/{provider}/login")
@inject
async def oidc_login(
    request: web.Request,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(request, _oidc_name(request), use_case)


@routes.get("/auth/oidc/{provider}/callback")
@inject
async def oidc_callback(
    request: web.Request,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, _oidc_name(request), use_case)


@routes.get("/auth/github/login")
@inject
async def github_login(
    request: web.Request,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(request, "github", use_case)


@routes.get("/auth/github/callback")
@inject
async def github_callback(
    request: web.Request,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, "github", use_case)


@routes.get("/auth/identities")
@inject
async def list_identities(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sign_in.ListIdentities = Provide[Container.list_identities],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    links = await use_case(principal.tenant, principal.account)
    return web.json_response({"items": [identity_view(link) for link in links]})


@routes.post("/auth/identities/{provider}/link")
@inject
async def link_identity(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    provider = request.match_info["provider"]
    return await start_flow(request, provider, use_case, link_to=principal.account)


@routes.delete("/auth/identities/{provider}")
@inject
async def unlink_identity(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sign_in.UnlinkIdentity = Provide[Container.unlink_identity],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    await use_case(principal.tenant, principal.account.id, request.match_info["provider"])
    return web.Response(status=204)
