"""The admin API over the tenant's organizations and roles (scope ``organizations:manage``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, ClassVar
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.organizations import AdminOrganizations
from identity.domain.api_keys import Scope
from identity.domain.organizations import (
    MAX_METADATA_BYTES,
    MAX_PERMISSIONS_PER_ROLE,
    MAX_ROLE_DESCRIPTION,
    Role,
)
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.handlers.organizations import (
    MemberList,
    MembershipView,
    MemberView,
    OrganizationName,
    OrganizationSlug,
    OrganizationView,
    Roles,
)
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.pagination import encode_cursor
from identity.entrypoints.http.views import client_info

endpoints = d.Endpoints(tag="admin")
MANAGE = d.api_key(Scope.ORGANIZATIONS_MANAGE)
ORGANIZATION_ID = d.path_id("organization_id", "the organization's id")
USER_ID = d.path_id("user_id", "the member's user id")
ROLE_NAME = d.path_text("name", "the role's name", pattern=r"^[a-z0-9][a-z0-9_.:-]{0,62}$")


Permissions = Annotated[
    list[str],
    d.Strings(
        "permission strings, e.g. `invoices:read` (letters, digits, `_ . : / * -`)",
        max_items=MAX_PERMISSIONS_PER_ROLE,
        max_length=128,
    ),
]
RoleName = Annotated[
    str,
    d.Text(
        "1-63 lower-case letters, digits and `_ . : -`",
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9_.:-]{0,62}$",
    ),
]
Description = Annotated[str, d.Text("what the role is for", max_length=MAX_ROLE_DESCRIPTION)]


@attrs.frozen
class JsonObject(d.Rule):
    """Any JSON object of at most ``max_bytes`` once serialised (the use case re-checks)."""

    max_bytes: int = MAX_METADATA_BYTES

    def reader(self, base: Any) -> Callable[[Any], Any]:
        max_bytes = self.max_bytes

        def read(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise d.Invalid("must be an object")
            if len(json.dumps(value)) > max_bytes:
                raise d.Invalid(f"must be at most {max_bytes} bytes of JSON")
            return dict(value)

        return read

    def schema(self, base: Any) -> d.Schema:
        return {"type": "object", "description": self.description or ""}


Metadata = Annotated[dict[str, Any], JsonObject("free JSON (at most 4 KiB)")]


@attrs.frozen
class OrganizationList:
    """A page of organizations, oldest first."""

    items: list[OrganizationView]
    next_cursor: str | None = d.out("pass as `cursor` for the next page; null on the last")


@attrs.frozen
class RoleView:
    """A role of the tenant."""

    name: str
    description: str
    permissions: list[str] = d.out("everything it holds (a built-in role's own included)")
    built_in: bool = d.out("owner, admin and member: always there, never deleted")

    @classmethod
    def of(cls, role: Role) -> RoleView:
        return cls(role.name, role.description, sorted(role.effective_permissions), role.built_in)


@attrs.frozen
class RoleList:
    """The tenant's roles by name."""

    items: list[RoleView]


@attrs.frozen
class NewOrganizationBody:
    name: OrganizationName
    slug: OrganizationSlug | None = None
    metadata: Metadata | None = None


@attrs.frozen
class OrganizationChangesBody:
    any_of: ClassVar[tuple[str, ...]] = ("name", "slug", "metadata")

    name: OrganizationName | None = None
    slug: OrganizationSlug | None = None
    metadata: Metadata | None = None


@attrs.frozen
class NewMemberBody:
    user_id: Annotated[UUID, d.Id("a user of the tenant")]
    roles: Roles


@attrs.frozen
class MemberRolesBody:
    roles: Roles


@attrs.frozen
class NewRoleBody:
    name: RoleName
    description: Description | None = None
    permissions: Permissions | None = None


@attrs.frozen
class RoleChangesBody:
    any_of: ClassVar[tuple[str, ...]] = ("description", "permissions")

    description: Description | None = None
    permissions: Permissions | None = None


@endpoints.get(
    "/admin/organizations",
    summary="List the tenant's organizations",
    query=d.PageQuery,
    ok=OrganizationList,
    auth=MANAGE,
)
@inject
async def admin_list_organizations(
    request: web.Request,
    query: d.PageQuery,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> OrganizationList:
    page = await use_case.list_page(request_tenant(request), query.cursor, query.limit)
    return OrganizationList([OrganizationView.of(o) for o in page.items], encode_cursor(page.next))


@endpoints.post(
    "/admin/organizations",
    summary="Create an organization (without members: add an owner next)",
    body=NewOrganizationBody,
    ok=OrganizationView,
    status=201,
    auth=MANAGE,
    errors=("slug_taken",),
)
@inject
async def admin_create_organization(
    request: web.Request,
    body: NewOrganizationBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> OrganizationView:
    created = await use_case.create(
        request_tenant(request), body.name, body.slug, body.metadata, client_info(request)
    )
    return OrganizationView.of(created)


@endpoints.get(
    "/admin/organizations/{organization_id}",
    summary="Read an organization",
    path_params=(ORGANIZATION_ID,),
    ok=OrganizationView,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def admin_get_organization(
    request: web.Request,
    organization_id: UUID,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> OrganizationView:
    return OrganizationView.of(await use_case.get(request_tenant(request), organization_id))


@endpoints.patch(
    "/admin/organizations/{organization_id}",
    summary="Change an organization's name, slug or metadata",
    path_params=(ORGANIZATION_ID,),
    body=OrganizationChangesBody,
    ok=OrganizationView,
    auth=MANAGE,
    errors=("not_found", "slug_taken"),
)
@inject
async def admin_update_organization(
    request: web.Request,
    organization_id: UUID,
    body: OrganizationChangesBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> OrganizationView:
    changed = await use_case.update(
        request_tenant(request),
        organization_id,
        name=body.name,
        slug=body.slug,
        metadata=body.metadata,
    )
    return OrganizationView.of(changed)


@endpoints.delete(
    "/admin/organizations/{organization_id}",
    summary="Delete an organization with its memberships and invitations",
    path_params=(ORGANIZATION_ID,),
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def admin_delete_organization(
    request: web.Request,
    organization_id: UUID,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> None:
    await use_case.delete(request_tenant(request), organization_id, client_info(request))


@endpoints.get(
    "/admin/organizations/{organization_id}/members",
    summary="List an organization's members",
    path_params=(ORGANIZATION_ID,),
    query=d.PageQuery,
    ok=MemberList,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def admin_list_members(
    request: web.Request,
    organization_id: UUID,
    query: d.PageQuery,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> MemberList:
    page = await use_case.members(
        request_tenant(request), organization_id, query.cursor, query.limit
    )
    return MemberList([MemberView.of(e) for e in page.items], encode_cursor(page.next))


@endpoints.post(
    "/admin/organizations/{organization_id}/members",
    summary="Add a user of the tenant to an organization",
    path_params=(ORGANIZATION_ID,),
    body=NewMemberBody,
    ok=MembershipView,
    status=201,
    auth=MANAGE,
    errors=("not_found", "already_member"),
)
@inject
async def admin_add_member(
    request: web.Request,
    organization_id: UUID,
    body: NewMemberBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> MembershipView:
    membership = await use_case.add_member(
        request_tenant(request), organization_id, body.user_id, body.roles, client_info(request)
    )
    return MembershipView.of(membership)


@endpoints.patch(
    "/admin/organizations/{organization_id}/members/{user_id}",
    summary="Change a member's roles",
    path_params=(ORGANIZATION_ID, USER_ID),
    body=MemberRolesBody,
    ok=MembershipView,
    auth=MANAGE,
    errors=("not_found", "last_owner"),
)
@inject
async def admin_change_member_roles(
    request: web.Request,
    organization_id: UUID,
    user_id: UUID,
    body: MemberRolesBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> MembershipView:
    membership = await use_case.change_roles(
        request_tenant(request), organization_id, user_id, body.roles, client_info(request)
    )
    return MembershipView.of(membership)


@endpoints.delete(
    "/admin/organizations/{organization_id}/members/{user_id}",
    summary="Remove a member",
    path_params=(ORGANIZATION_ID, USER_ID),
    auth=MANAGE,
    errors=("not_found", "last_owner"),
)
@inject
async def admin_remove_member(
    request: web.Request,
    organization_id: UUID,
    user_id: UUID,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> None:
    await use_case.remove_member(
        request_tenant(request), organization_id, user_id, client_info(request)
    )


@endpoints.get("/admin/roles", summary="List the tenant's roles", ok=RoleList, auth=MANAGE)
@inject
async def admin_list_roles(
    request: web.Request,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> RoleList:
    return RoleList([RoleView.of(role) for role in await use_case.roles(request_tenant(request))])


@endpoints.post(
    "/admin/roles",
    summary="Create a role",
    body=NewRoleBody,
    ok=RoleView,
    status=201,
    auth=MANAGE,
    errors=("role_exists", "built_in_role"),
)
@inject
async def admin_create_role(
    request: web.Request,
    body: NewRoleBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> RoleView:
    role = await use_case.create_role(
        request_tenant(request), body.name, body.description or "", body.permissions or ()
    )
    return RoleView.of(role)


@endpoints.patch(
    "/admin/roles/{name}",
    summary="Change a role's description or permissions (built-in roles too)",
    path_params=(ROLE_NAME,),
    body=RoleChangesBody,
    ok=RoleView,
    auth=MANAGE,
    errors=("not_found",),
)
@inject
async def admin_update_role(
    request: web.Request,
    name: str,
    body: RoleChangesBody,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> RoleView:
    role = await use_case.update_role(
        request_tenant(request), name, description=body.description, permissions=body.permissions
    )
    return RoleView.of(role)


@endpoints.delete(
    "/admin/roles/{name}",
    summary="Delete a role; members holding it lose it (built-in roles stay)",
    path_params=(ROLE_NAME,),
    auth=MANAGE,
    errors=("not_found", "built_in_role"),
)
@inject
async def admin_delete_role(
    request: web.Request,
    name: str,
    use_case: AdminOrganizations = Provide[Container.admin_organizations],
) -> None:
    await use_case.delete_role(request_tenant(request), name)
