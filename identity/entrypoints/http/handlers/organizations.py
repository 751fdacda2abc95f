"""The signed-in user's organizations (section 19): ``/auth/organizations`` and
``/auth/invitations/accept``. Permissions are checked in the caller's own membership."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.organizations import MyOrganization, SelfServiceOrganizations
from identity.application.ports import MemberEntry
from identity.domain.emails import Email
from identity.domain.organizations import (
    MAX_ROLES_PER_MEMBER,
    Invitation,
    Membership,
    Organization,
)
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.http.views import TokenResponse, client_info

endpoints = d.Endpoints(tag="organizations")
ORGANIZATION_ID = d.path_id("organization_id", "the organization's id")
USER_ID = d.path_id("user_id", "the member's user id")
INVITATION_ID = d.path_id("invitation_id", "the invitation's id")
SWITCH_TARGET = d.path_text(
    "organization_id",
    "the organization's id, or `none` to leave the organization context",
    pattern=r"^(none|[0-9a-fA-F-]{32,36})$",
)
MEMBER_ERRORS = ("not_found", "insufficient_permission")


Roles = Annotated[
    list[str],
    d.Strings(
        "role names of the tenant (`owner`, `admin`, `member` or its own)",
        max_items=MAX_ROLES_PER_MEMBER,
        max_length=63,
    ),
]
OrganizationName = Annotated[str, d.Text("the organization's name", max_length=200)]
OrganizationSlug = Annotated[
    str,
    d.Text(
        "1-63 lower-case letters, digits and dashes; made from the name when absent",
        max_length=63,
        pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$",
    ),
]


@attrs.frozen
class OrganizationView:
    """An organization."""

    id: UUID
    slug: str
    name: str
    created_at: datetime
    metadata: dict[str, Any] = d.out("free JSON the admin API sets")

    @classmethod
    def of(cls, organization: Organization) -> OrganizationView:
        o = organization
        return cls(o.id, o.slug, o.name, o.created_at, dict(o.metadata))


@attrs.frozen
class MyOrganizationView:
    """One of the caller's organizations, with the caller's roles there."""

    id: UUID
    slug: str
    name: str
    created_at: datetime
    roles: list[str] = d.out("the caller's roles in it")
    permissions: list[str] = d.out("the union of those roles' permissions")

    @classmethod
    def of(cls, mine: MyOrganization) -> MyOrganizationView:
        o = mine.organization
        return cls(o.id, o.slug, o.name, o.created_at, sorted(mine.roles), sorted(mine.permissions))


@attrs.frozen
class MyOrganizationList:
    """The caller's organizations, oldest membership first."""

    items: list[MyOrganizationView]


@attrs.frozen
class MemberView:
    """A member of an organization."""

    user_id: UUID
    email: str
    roles: list[str]
    joined_at: datetime

    @classmethod
    def of(cls, entry: MemberEntry) -> MemberView:
        m = entry.membership
        return cls(m.user_id, entry.email, sorted(m.roles), m.created_at)


@attrs.frozen
class MembershipView:
    """A membership after a change."""

    user_id: UUID
    organization_id: UUID
    roles: list[str]
    joined_at: datetime

    @classmethod
    def of(cls, membership: Membership) -> MembershipView:
        m = membership
        return cls(m.user_id, m.organization_id, sorted(m.roles), m.created_at)


@attrs.frozen
class MemberList:
    """A page of members, oldest first."""

    items: list[MemberView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


@attrs.frozen
class InvitationView:
    """A pending invitation (its code went out by mail only)."""

    id: UUID
    organization_id: UUID
    email: str
    roles: list[str]
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationView:
        i = invitation
        return cls(i.id, i.organization_id, i.email, sorted(i.roles), i.created_at, i.expires_at)


@attrs.frozen
class InvitationList:
    """The organization's pending invitations, oldest first."""

    items: list[InvitationView]


@attrs.frozen
class NewOrganizationBody:
    name: OrganizationName
    slug: OrganizationSlug | None = None


@attrs.frozen
class RolesBody:
    roles: Roles


@attrs.frozen
class InvitationBody:
    email: Annotated[Email, d.Address("the address to invite; only its owner can accept")]
    roles: Roles


@attrs.frozen
class AcceptBody:
    code: Annotated[str, d.Text("the invitation code from the mail", max_length=128)]


@endpoints.get(
    "/auth/organizations",
    summary="List the caller's organizations with the caller's roles",
    ok=MyOrganizationList,
    auth=d.BEARER,
)
@inject
async def list_my_organizations(
    request: web.Request,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> MyOrganizationList:
    found = await use_case.list_mine(d.user(request))
    return MyOrganizationList([MyOrganizationView.of(mine) for mine in found])


@endpoints.post(
    "/auth/organizations",
    summary="Create an organization; the caller becomes its owner",
    body=NewOrganizationBody,
    ok=MyOrganizationView,
    status=201,
    auth=d.BEARER,
    errors=("slug_taken", "organizations_disabled"),
)
@inject
async def create_organization(
    request: web.Request,
    body: NewOrganizationBody,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> MyOrganizationView:
    created = await use_case.create(d.user(request), body.name, body.slug, client_info(request))
    return MyOrganizationView.of(created)


@endpoints.post(
    "/auth/organizations/{organization_id}/switch",
    summary="Act in an organization (or in none): tokens of the same session with org claims",
    description="The access token adds `org_id`, `org_slug`, `org_roles` and `permissions`; "
    "refreshes keep the organization and carry the roles as they are then (none once the "
    "membership ended). `none` leaves the organization context.",
    path_params=(SWITCH_TARGET,),
    ok=TokenResponse,
    auth=d.BEARER,
    errors=("not_found",),
)
@inject
async def switch_organization(
    request: web.Request,
    organization_id: str,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> TokenResponse:
    target: UUID | None = None
    if organization_id != "none":
        try:
            target = UUID(organization_id)
        except ValueError:
            raise Problem(404, "not_found", "Not found", "No such object.") from None
    pair = await use_case.switch(d.user(request), target, client_info(request))
    return TokenResponse.of(pair)


@endpoints.get(
    "/auth/organizations/{organization_id}/members",
    summary="List an organization's members (any member may)",
    path_params=(ORGANIZATION_ID,),
    query=d.PageQuery,
    ok=MemberList,
    auth=d.BEARER,
    errors=("not_found",),
)
@inject
async def list_members(
    request: web.Request,
    organization_id: UUID,
    query: d.PageQuery,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> MemberList:
    page = await use_case.members(d.user(request), organization_id, query.cursor, query.limit)
    return MemberList([MemberView.of(e) for e in page.items], encode_cursor(page.next))


@endpoints.patch(
    "/auth/organizations/{organization_id}/members/{user_id}",
    summary="Change a member's roles (`org:members:manage`; only owners give or take `owner`)",
    path_params=(ORGANIZATION_ID, USER_ID),
    body=RolesBody,
    ok=MembershipView,
    auth=d.BEARER,
    errors=(*MEMBER_ERRORS, "last_owner"),
)
@inject
async def change_member_roles(
    request: web.Request,
    organization_id: UUID,
    user_id: UUID,
    body: RolesBody,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> MembershipView:
    membership = await use_case.change_roles(
        d.user(request), organization_id, user_id, body.roles, client_info(request)
    )
    return MembershipView.of(membership)


@endpoints.delete(
    "/auth/organizations/{organization_id}/members/{user_id}",
    summary="Remove a member (`org:members:manage`), or leave (the caller's own id)",
    path_params=(ORGANIZATION_ID, USER_ID),
    auth=d.BEARER,
    errors=(*MEMBER_ERRORS, "last_owner"),
)
@inject
async def remove_member(
    request: web.Request,
    organization_id: UUID,
    user_id: UUID,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> None:
    await use_case.remove(d.user(request), organization_id, user_id, client_info(request))


@endpoints.post(
    "/auth/organizations/{organization_id}/invitations",
    summary="Invite an address (`org:members:manage`): a mail with a code and a link",
    description="The code is valid for 7 days, once, for the invited address in this "
    "tenant; it is stored only as a keyed hash.",
    path_params=(ORGANIZATION_ID,),
    body=InvitationBody,
    ok=InvitationView,
    status=201,
    auth=d.BEARER,
    errors=(*MEMBER_ERRORS, "already_member"),
)
@inject
async def create_invitation(
    request: web.Request,
    organization_id: UUID,
    body: InvitationBody,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> InvitationView:
    invitation = await use_case.invite(
        d.user(request), organization_id, body.email, body.roles, client_info(request)
    )
    return InvitationView.of(invitation)


@endpoints.get(
    "/auth/organizations/{organization_id}/invitations",
    summary="List pending invitations (`org:members:manage`)",
    path_params=(ORGANIZATION_ID,),
    ok=InvitationList,
    auth=d.BEARER,
    errors=MEMBER_ERRORS,
)
@inject
async def list_invitations(
    request: web.Request,
    organization_id: UUID,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> InvitationList:
    found = await use_case.invitations(d.user(request), organization_id)
    return InvitationList([InvitationView.of(i) for i in found])


@endpoints.delete(
    "/auth/organizations/{organization_id}/invitations/{invitation_id}",
    summary="Revoke a pending invitation (`org:members:manage`)",
    path_params=(ORGANIZATION_ID, INVITATION_ID),
    auth=d.BEARER,
    errors=MEMBER_ERRORS,
)
@inject
async def delete_invitation(
    request: web.Request,
    organization_id: UUID,
    invitation_id: UUID,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> None:
    await use_case.revoke_invitation(d.user(request), organization_id, invitation_id)


@endpoints.post(
    "/auth/invitations/accept",
    summary="Accept an invitation: the signed-in address must be the invited one",
    body=AcceptBody,
    ok=MyOrganizationView,
    auth=d.BEARER,
    errors=("invitation_invalid", "invitation_email_mismatch", "already_member"),
)
@inject
async def accept_invitation(
    request: web.Request,
    body: AcceptBody,
    use_case: SelfServiceOrganizations = Provide[Container.self_service_organizations],
) -> MyOrganizationView:
    joined = await use_case.accept(d.user(request), body.code, client_info(request))
    return MyOrganizationView.of(joined)
