"""Sign-in with Google: the redirect to the provider and the callback."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import external_sign_in as sign_in
from identity.application.first_factor import MfaRequired, SignInResult
from identity.domain.errors import DomainError
from identity.entrypoints.container import Container
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.problems import problem_for, problem_response
from identity.entrypoints.http.views import client_info, sign_in_view

routes = web.RouteTableDef()

CALLBACK_PATH = "/auth/google/callback"
COOKIE = "identity_oauth"


@routes.get("/auth/google/login")
@inject
async def google_login(
    request: web.Request,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_google_sign_in],
    redirect_uri: str = Provide[Container.google_redirect_uri],
) -> web.Response:
    command = sign_in.StartSignIn(
        tenant=request_tenant(request), redirect_to=request.query.get("redirect_to")
    )
    started = await use_case(command)
    response = web.Response(status=302, headers={"Location": started.authorization_url})
    response.set_cookie(
        COOKIE,
        started.browser_binding,
        max_age=started.max_age_seconds,
        path=CALLBACK_PATH,
        httponly=True,
        samesite="Lax",  # sent on the top-level redirect back from the provider
        secure=redirect_uri.startswith("https://"),
    )
    return response


@routes.get(CALLBACK_PATH)
@inject
async def google_callback(
    request: web.Request,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_google_sign_in],
) -> web.Response:
    query = request.query
    command = sign_in.FinishSignIn(
        tenant=request_tenant(request),
        browser_binding=request.cookies.get(COOKIE),
        state=query.get("state"),
        code=query.get("code"),
        error=query.get("error"),
        client=client_info(request),
    )
    try:
        result = await use_case(command)
    except DomainError as error:
        problem = problem_for(error)
        if problem is None:
            raise
        response = problem_response(problem)
    else:
        response = _signed_in(result)
    # The pending sign-in is spent whatever the outcome.
    response.del_cookie(COOKIE, path=CALLBACK_PATH)
    return response


def _signed_in(result: sign_in.SignedIn) -> web.Response:
    if result.redirect_to is None:
        return web.json_response(sign_in_view(result.tokens))
    # The fragment never reaches a server, so the tokens stay out of access logs
    # and Referer headers.
    location = f"{result.redirect_to}#{urlencode(_fragment(result.tokens))}"
    return web.Response(status=302, headers={"Location": location})


def _fragment(result: SignInResult) -> dict[str, str]:
    if isinstance(result, MfaRequired):
        return {
            "mfa_required": "true",
            "mfa_token": result.mfa_token,
            "methods": ",".join(result.methods),
            "expires_in": str(result.expires_in),
        }
    pair = result
    return {
        "access_token": pair.access_token,
        "token_type": "bearer",
        "expires_in": str(pair.expires_in),
        "refresh_token": pair.refresh_token,
        "refresh_token_expires_in": str(pair.refresh_token_expires_in),
    }
