"""Handlers of tokens and sessions: refresh, logout, me, session management."""

from __future__ import annotations

import uuid

from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import sessions
from identity.domain.errors import SessionNotFoundError
from identity.entrypoints.container import Container
from identity.entrypoints.http.bodies import read_body
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.principals import authenticated
from identity.entrypoints.http.views import client_info, session_view, token_view, user_view

routes = web.RouteTableDef()


@routes.post("/auth/refresh-token")
@inject
async def refresh_token(
    request: web.Request,
    use_case: sessions.RefreshSession = Provide[Container.refresh_session],
) -> web.Response:
    body = await read_body(request)
    token = body.text("refresh_token", max_length=4096)
    body.check()
    return web.json_response(
        token_view(await use_case(request_tenant(request), token, client_info(request)))
    )


@routes.post("/auth/logout")
@inject
async def logout(
    request: web.Request,
    use_case: sessions.LogOut = Provide[Container.log_out],
) -> web.Response:
    body = await read_body(request)
    token = body.text("refresh_token", max_length=4096)
    body.check()
    await use_case(request_tenant(request), token, client_info(request))
    return web.json_response({"message": "Logged out."})


@routes.post("/auth/logout-all")
@inject
async def logout_all(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sessions.LogOutEverywhere = Provide[Container.log_out_everywhere],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    count = await use_case(principal, client_info(request))
    return web.json_response({"message": "Logged out everywhere.", "sessions_revoked": count})


@routes.post("/auth/change-password")
@inject
async def change_password(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sessions.ChangeOwnPassword = Provide[Container.change_password],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    body = await read_body(request)
    command = sessions.ChangePassword(
        principal=principal,
        current_password=body.password("current_password"),
        new_password=body.password("new_password"),
        client=client_info(request),
    )
    body.check()
    await use_case(command)
    return web.json_response({"message": "Password changed. Other sessions have been ended."})


@routes.get("/auth/me")
@inject
async def me(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    return web.json_response(user_view(principal.account, principal.tenant))


@routes.get("/auth/sessions")
@inject
async def list_sessions(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sessions.ListSessions = Provide[Container.list_sessions],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    found = await use_case(principal)
    return web.json_response(
        {"sessions": [session_view(session, principal.session_id) for session in found]}
    )


@routes.delete("/auth/sessions/{session_id}")
@inject
async def delete_session(
    request: web.Request,
    authenticate: sessions.Authenticate = Provide[Container.authenticate],
    use_case: sessions.RevokeSession = Provide[Container.revoke_session],
) -> web.Response:
    principal = await authenticated(request, authenticate)
    try:
        session_id = uuid.UUID(request.match_info["session_id"])
    except ValueError:
        raise SessionNotFoundError("not a session id") from None
    await use_case(principal, session_id, client_info(request))
    return web.Response(status=204)
