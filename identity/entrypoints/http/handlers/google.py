"""Sign-in with Google: the redirect to the provider and the callback."""

from __future__ import annotations

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import external_sign_in as sign_in
from identity.entrypoints.container import Container
from identity.entrypoints.http.handlers.providers import (
    COOKIE,
    callback_path,
    finish_flow,
    start_flow,
)

routes = web.RouteTableDef()

CALLBACK_PATH = callback_path("google")
__all__ = ["CALLBACK_PATH", "COOKIE", "routes"]


@routes.get("/auth/google/login")
@inject
async def google_login(
    request: web.Request,
    use_case: sign_in.StartExternalSignIn = Provide[Container.start_external_sign_in],
) -> web.Response:
    return await start_flow(
        request, "google", use_case, redirect_to=request.query.get("redirect_to")
    )


@routes.get(CALLBACK_PATH)
@inject
async def google_callback(
    request: web.Request,
    use_case: sign_in.FinishExternalSignIn = Provide[Container.finish_external_sign_in],
) -> web.Response:
    return await finish_flow(request, "google", use_case)
