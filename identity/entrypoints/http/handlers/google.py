"""Sign-in with Google: the redirect to the provider and the callback."""

from __future__ import annotations

from typing import Annotated

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import external_sign_in as sign_in
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.handlers.providers import (
    CALLBACK,
    COOKIE,
    LOGIN,
    CallbackQuery,
    callback_path,
    finish_flow,
    start_flow,
)

endpoints = d.Endpoints(tag="google")

CALLBACK_PATH = callback_path("google")
__all__ = ["CALLBACK_PATH", "COOKIE", "endpoints"]


@attrs.frozen
class GoogleStartQuery:
    """As ``StartQuery``, but an empty ``redirect_to`` is the flow's to refuse (400
    ``oauth_failed``, as Google's login always answered), not a 422."""

    redirect_to: (
        Annotated[
            str,
            d.Text(
                "where to send the browser afterwards, with the tokens in the URL fragment; "
                "must be in `IDENTITY_OAUTH_REDIRECT_ALLOWLIST`",
                max_length=2048,
                format="uri",
                empty=True,
            ),
        ]
        | None
    ) = None


@endpoints.get(
    "/auth/google/login",
    operation_id="googleLogin",
    summary="Start signing in with Google",
    description="OpenID Connect authorization-code flow with `state`, `nonce` and PKCE S256.",
    **{**LOGIN, "query": GoogleStartQuery},
)
@inject
async def google_login(
    request: web.Request,
    query: GoogleStartQuery,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(request, "google", use_case, redirect_to=query.redirect_to)


@endpoints.get(
    CALLBACK_PATH,
    operation_id="googleCallback",
    summary="Finish signing in with Google",
    description="Validates the state, exchanges the code with the PKCE verifier and checks the "
    "ID token. An existing account with the same email is linked only when the provider "
    "verified the email.",
    **CALLBACK,
)
@inject
async def google_callback(
    request: web.Request,
    query: CallbackQuery,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, "google", use_case)
