"""The account page's organizations (section 19): the caller's organizations, switching
the browser's session into one, and, for owners and admins, members and invitations.
``/ui/invitations?code=`` is where the invitation mail leads."""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from aiohttp import web

from identity.application.ports import MemberEntry
from identity.application.sessions import Principal
from identity.domain.errors import DomainError
from identity.domain.organizations import (
    ADMIN,
    MEMBER,
    ORG_MEMBERS_MANAGE,
    OWNER,
    Invitation,
)
from identity.entrypoints.http.problems import Problem
from identity.entrypoints.http.views import client_info
from identity.entrypoints.pages.account import ACCOUNT, account_error, done, signed_in
from identity.entrypoints.pages.handlers import SIGN_IN
from identity.entrypoints.pages.page import Page, load_page
from identity.entrypoints.pages.requests import (
    InvitationCode,
    OrgInvitation,
    OrgInvite,
    OrgMember,
    OrgMemberRole,
    OrgSwitch,
)

routes = web.RouteTableDef()

INVITATIONS = "/ui/invitations"
ROLES = (MEMBER, ADMIN, OWNER)
SECTION = "organizations"


@attrs.frozen
class OrganizationPanel:
    """One of the caller's organizations as the account page shows it."""

    id: str
    name: str
    slug: str
    roles: list[str]
    manages: bool
    members: list[MemberEntry] = attrs.field(factory=list)
    invitations: list[Invitation] = attrs.field(factory=list)


async def organizations_context(page: Page, principal: Principal) -> dict[str, Any]:
    """What ``_organizations.html`` shows; for a manager, the first members and the
    pending invitations of each organization."""
    use_case = page.container.self_service_organizations()
    panels = []
    for mine in await use_case.list_mine(principal):
        organization = mine.organization
        manages = ORG_MEMBERS_MANAGE in mine.permissions
        members: list[MemberEntry] = []
        invitations: list[Invitation] = []
        if manages:
            members = (await use_case.members(principal, organization.id, None, 50)).items
            invitations = await use_case.invitations(principal, organization.id)
        panels.append(
            OrganizationPanel(
                str(organization.id),
                organization.name,
                organization.slug,
                sorted(mine.roles),
                manages,
                members,
                invitations,
            )
        )
    return {"organizations": panels, "organization_roles": ROLES}


@routes.post("/ui/account/organizations/switch")
@signed_in
async def switch(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        raw = form.parse(OrgSwitch).organization_id
        try:
            target = None if raw == "none" else uuid.UUID(raw)
        except ValueError:
            raise Problem(404, "not_found", "Not found") from None
        await page.container.self_service_organizations().switch(
            principal, target, client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "organization_switched")


@routes.post("/ui/account/organizations/invite")
@signed_in
async def invite(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(OrgInvite)
        organization_id, email, role = fields.organization_id, fields.email, fields.role
        await page.container.self_service_organizations().invite(
            principal, organization_id, email, [role], client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "invitation_sent")


@routes.post("/ui/account/organizations/invitations/revoke")
@signed_in
async def revoke_invitation(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(OrgInvitation)
        organization_id, invitation_id = fields.organization_id, fields.invitation_id
        await page.container.self_service_organizations().revoke_invitation(
            principal, organization_id, invitation_id
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "invitation_revoked")


@routes.post("/ui/account/organizations/members/role")
@signed_in
async def change_role(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(OrgMemberRole)
        organization_id, user_id, role = fields.organization_id, fields.user_id, fields.role
        await page.container.self_service_organizations().change_roles(
            principal, organization_id, user_id, [role], client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "member_changed")


@routes.post("/ui/account/organizations/members/remove")
@signed_in
async def remove_member(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        fields = form.parse(OrgMember)
        organization_id, user_id = fields.organization_id, fields.user_id
        await page.container.self_service_organizations().remove(
            principal, organization_id, user_id, client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "member_removed")


@routes.get(INVITATIONS)
async def invitation(request: web.Request) -> web.Response:
    """The invitation mail's link: signed in, a button accepts; else sign in first."""
    page = await load_page(request)
    code = request.query.get("code", "")[:128]
    if page.principal is None:
        back = page.url(INVITATIONS, code=code, return_to=None)
        return page.redirect(page.url(SIGN_IN, return_to=back))
    return page.render("invitation.html", code=code)


@routes.post(INVITATIONS)
@signed_in
async def accept(page: Page, principal: Principal) -> web.Response:
    form = await page.form()
    try:
        code = form.parse(InvitationCode).code
        await page.container.self_service_organizations().accept(
            principal, code, client_info(page.request)
        )
    except (DomainError, Problem) as error:
        return await account_error(page, principal, error, form, SECTION)
    return done(page, "invitation_accepted")


__all__ = ["ACCOUNT", "organizations_context", "routes"]
