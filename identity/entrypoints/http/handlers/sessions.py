"""Handlers of tokens and sessions: refresh, logout, me, session management."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import sessions
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.views import (
    Message,
    Sessions,
    SessionsRevoked,
    SessionView,
    TokenResponse,
    UserView,
    client_info,
)

endpoints = d.Endpoints(tag="sessions")


@attrs.frozen
class RefreshTokenBody:
    refresh_token: Annotated[str, d.Text("a refresh token", max_length=4096)]


@attrs.frozen
class ChangePasswordBody:
    current_password: Annotated[str, d.Password()]
    new_password: Annotated[str, d.NewPassword()]


@endpoints.post(
    "/auth/refresh-token",
    operation_id="refreshToken",
    summary="Rotate a refresh token",
    description="The presented token is spent. Presented again within the grace window it "
    "answers the same new refresh token; after it, `refresh_token_reused` and the session "
    "is ended.",
    body=RefreshTokenBody,
    ok=TokenResponse,
    ok_description="A new token pair.",
    errors=("invalid_token", "refresh_token_reused", "account_disabled"),
)
@inject
async def refresh_token(
    request: web.Request,
    body: RefreshTokenBody,
    use_case: sessions.RefreshSession = Provide[Container.refresh_session],
) -> TokenResponse:
    pair = await use_case(request_tenant(request), body.refresh_token, client_info(request))
    return TokenResponse.of(pair)


@endpoints.post(
    "/auth/logout",
    operation_id="logout",
    summary="End the session of a refresh token",
    description="Idempotent.",
    body=RefreshTokenBody,
    ok=Message,
    ok_description="Logged out.",
    errors=("invalid_token",),
)
@inject
async def logout(
    request: web.Request,
    body: RefreshTokenBody,
    use_case: sessions.LogOut = Provide[Container.log_out],
) -> Message:
    await use_case(request_tenant(request), body.refresh_token, client_info(request))
    return Message("Logged out.")


@endpoints.post(
    "/auth/logout-all",
    operation_id="logoutAll",
    summary="End every session of the caller",
    ok=SessionsRevoked,
    ok_description="Every session is ended.",
    auth=d.BEARER,
)
@inject
async def logout_all(
    request: web.Request,
    use_case: sessions.LogOutEverywhere = Provide[Container.log_out_everywhere],
) -> SessionsRevoked:
    count = await use_case(d.user(request), client_info(request))
    return SessionsRevoked("Logged out everywhere.", count)


@endpoints.post(
    "/auth/change-password",
    operation_id="changePassword",
    summary="Change the caller's password",
    description="Every other session of the account is ended.",
    body=ChangePasswordBody,
    ok=Message,
    ok_description="The password is changed.",
    auth=d.BEARER,
    errors=("invalid_credentials", "mfa_required"),
)
@inject
async def change_password(
    request: web.Request,
    body: ChangePasswordBody,
    use_case: sessions.ChangePassword = Provide[Container.change_password],
) -> Message:
    command = sessions.ChangePasswordCommand(
        principal=d.user(request),
        current_password=body.current_password,
        new_password=body.new_password,
        client=client_info(request),
    )
    await use_case(command)
    return Message("Password changed. Other sessions have been ended.")


@endpoints.get(
    "/auth/me",
    operation_id="me",
    summary="The caller's account",
    ok=UserView,
    ok_description="The account.",
    auth=d.BEARER,
)
async def me(request: web.Request) -> UserView:
    principal = d.user(request)
    return UserView.of(principal.account, principal.tenant)


@endpoints.get(
    "/auth/sessions",
    operation_id="listSessions",
    summary="The caller's active sessions",
    ok=Sessions,
    ok_description="The sessions.",
    auth=d.BEARER,
)
@inject
async def list_sessions(
    request: web.Request,
    use_case: sessions.ListSessions = Provide[Container.list_sessions],
) -> Sessions:
    principal = d.user(request)
    found = await use_case(principal)
    return Sessions([SessionView.of(session, principal.session_id) for session in found])


@endpoints.delete(
    "/auth/sessions/{session_id}",
    operation_id="deleteSession",
    summary="End one of the caller's sessions",
    ok_description="The session is ended.",
    path_params=(d.path_id("session_id", "the session's id", detail="No such session."),),
    auth=d.BEARER,
)
@inject
async def delete_session(
    request: web.Request,
    session_id: UUID,
    use_case: sessions.RevokeSession = Provide[Container.revoke_session],
) -> None:
    await use_case(d.user(request), session_id, client_info(request))
