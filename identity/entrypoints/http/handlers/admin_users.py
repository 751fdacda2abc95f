"""The admin API over the users of the API key's tenant (scopes ``users:*``, ``sessions:write``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Self
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import admin
from identity.domain.accounts import Account
from identity.domain.api_keys import Scope
from identity.domain.emails import Email
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.views import UserView, client_info

endpoints = d.Endpoints(tag="admin")
READ = d.api_key(Scope.USERS_READ)
WRITE = d.api_key(Scope.USERS_WRITE)
USER_ID = d.path_id("user_id", "the user's id")


@attrs.frozen
class AdminUserView(UserView):
    """A user as the admin API shows it: the `/auth/me` user and more."""

    last_login_at: datetime | None = d.out("when a sign-in last opened a session; null if never")

    @classmethod
    def of(cls, account: Account, tenant: Tenant) -> Self:
        return cls(**cls.fields_of(account, tenant), last_login_at=account.last_login_at)


@attrs.frozen
class AdminUserList:
    """A page of users, oldest first."""

    items: list[AdminUserView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


FullName = Annotated[str, d.Text("the display name", max_length=200)]


@attrs.frozen
class UserQuery:
    email: (
        Annotated[Email, d.Address("only the user with this address (exact, normalised)")] | None
    ) = None
    limit: d.Limit = d.DEFAULT_LIMIT
    cursor: d.Cursor | None = None


@attrs.frozen
class NewUserBody:
    email: d.EmailAddress
    password: Annotated[str, d.NewPassword()] | None = None
    full_name: FullName | None = None
    verified: Annotated[bool, d.Flag("create the account with its email already verified")] = False


@attrs.frozen
class UserChangesBody:
    any_of: ClassVar[tuple[str, ...]] = ("full_name", "is_active", "is_verified")

    full_name: FullName | None = None
    is_active: Annotated[bool, d.Flag("false disables the user and ends every session")] | None = (
        None
    )
    is_verified: Annotated[bool, d.Flag("whether the email counts as verified")] | None = None


@attrs.frozen
class AdminSessionView:
    """An active session of the user."""

    id: UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    kind: str = d.out("browser: held by a hosted page's cookie; api: by tokens")

    @classmethod
    def of(cls, session: Session) -> AdminSessionView:
        return cls(
            session.id,
            session.created_at,
            session.last_used_at,
            session.user_agent,
            session.ip,
            session.kind,
        )


@attrs.frozen
class AdminSessionList:
    """The user's active sessions, oldest first (a user has few: one page)."""

    items: list[AdminSessionView]


@attrs.frozen
class UserSessionsRevoked:
    """How many of the user's sessions were ended."""

    sessions_revoked: int = d.out("how many active sessions were ended")


@endpoints.get(
    "/admin/users",
    summary="List users (or find one by email)",
    query=UserQuery,
    ok=AdminUserList,
    auth=READ,
)
@inject
async def list_users(
    request: web.Request,
    query: UserQuery,
    use_case: admin.ListUsers = Provide[Container.list_users],
) -> AdminUserList:
    tenant = request_tenant(request)
    page = await use_case(admin.FindUsers(tenant, query.email, query.cursor, query.limit))
    return AdminUserList(
        [AdminUserView.of(user.account, tenant) for user in page.items], encode_cursor(page.next)
    )


@endpoints.post(
    "/admin/users",
    summary="Create a user (no mail is sent)",
    body=NewUserBody,
    ok=AdminUserView,
    status=201,
    auth=WRITE,
    errors=("email_taken",),
)
@inject
async def create_user(
    request: web.Request,
    body: NewUserBody,
    use_case: admin.CreateUser = Provide[Container.create_user],
) -> AdminUserView:
    tenant = request_tenant(request)
    command = admin.NewUser(
        tenant, body.email, body.password, body.full_name, body.verified, client_info(request)
    )
    return AdminUserView.of((await use_case(command)).account, tenant)


@endpoints.get(
    "/admin/users/{user_id}",
    summary="Read a user",
    path_params=(USER_ID,),
    ok=AdminUserView,
    auth=READ,
)
@inject
async def get_user(
    request: web.Request, user_id: UUID, use_case: admin.GetUser = Provide[Container.get_user]
) -> AdminUserView:
    tenant = request_tenant(request)
    return AdminUserView.of((await use_case(tenant, user_id)).account, tenant)


@endpoints.patch(
    "/admin/users/{user_id}",
    summary="Change a user's name, verification or state (disabling ends every session)",
    path_params=(USER_ID,),
    body=UserChangesBody,
    ok=AdminUserView,
    auth=WRITE,
)
@inject
async def update_user(
    request: web.Request,
    user_id: UUID,
    body: UserChangesBody,
    use_case: admin.UpdateUser = Provide[Container.update_user],
) -> AdminUserView:
    tenant = request_tenant(request)
    changes = admin.UserChanges(
        tenant, user_id, body.full_name, body.is_active, body.is_verified, client_info(request)
    )
    return AdminUserView.of((await use_case(changes)).account, tenant)


@endpoints.delete(
    "/admin/users/{user_id}",
    summary="Erase a user and everything tied to it; the email can register again",
    path_params=(USER_ID,),
    auth=WRITE,
)
@inject
async def delete_user(
    request: web.Request,
    user_id: UUID,
    use_case: admin.DeleteUser = Provide[Container.delete_user],
) -> None:
    await use_case(request_tenant(request), user_id, client_info(request))


@endpoints.get(
    "/admin/users/{user_id}/sessions",
    summary="List a user's active sessions",
    path_params=(USER_ID,),
    ok=AdminSessionList,
    auth=READ,
)
@inject
async def list_user_sessions(
    request: web.Request,
    user_id: UUID,
    use_case: admin.ListUserSessions = Provide[Container.list_user_sessions],
) -> AdminSessionList:
    found = await use_case(request_tenant(request), user_id)
    return AdminSessionList([AdminSessionView.of(session) for session in found])


@endpoints.post(
    "/admin/users/{user_id}/logout",
    summary="End every session of a user at once",
    path_params=(USER_ID,),
    ok=UserSessionsRevoked,
    auth=d.api_key(Scope.SESSIONS_WRITE),
)
@inject
async def log_out_user(
    request: web.Request,
    user_id: UUID,
    use_case: admin.LogOutUser = Provide[Container.log_out_user],
) -> UserSessionsRevoked:
    return UserSessionsRevoked(
        await use_case(request_tenant(request), user_id, client_info(request))
    )
