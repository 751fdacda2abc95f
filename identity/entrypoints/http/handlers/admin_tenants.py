"""Tenants over HTTP for the deployment's operator (scope ``tenants:manage``).

The same rules as the ``identity tenants`` commands (``TenantAdmin``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application.tenancy import ResolveTenant, TenantAdmin, TenantChangeError
from identity.domain.api_keys import Scope
from identity.domain.errors import TenantNotFoundError
from identity.domain.tenants import Tenant
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.problems import FieldError, Problem, validation_problem

endpoints = d.Endpoints(tag="admin")
MANAGE = d.api_key(Scope.TENANTS_MANAGE)
SLUG = d.path_slug("slug", "the tenant's slug")
HIDDEN = "********"


@attrs.frozen
class TenantView:
    """A tenant; secret settings are shown masked."""

    id: UUID
    slug: str
    name: str
    disabled: bool
    created_at: datetime
    settings: dict[str, Any] = d.out("per-tenant overrides of the deployment's settings")

    @classmethod
    def of(cls, tenant: Tenant) -> TenantView:
        shown = {k: (HIDDEN if "secret" in k else v) for k, v in tenant.settings.items()}
        return cls(tenant.id, tenant.slug, tenant.name, tenant.disabled, tenant.created_at, shown)


@attrs.frozen
class TenantList:
    """Every tenant, by slug (a deployment has few)."""

    items: list[TenantView]
    next_cursor: str | None = d.out("always null: the whole list fits one page")


@attrs.frozen
class NewTenantBody:
    slug: Annotated[
        str,
        d.Text("1-63 lower-case letters, digits and dashes", max_length=63, pattern="^[a-z0-9-]+$"),
    ]
    name: Annotated[str, d.Text("a display name (default: the slug)", max_length=200)] | None = None


@attrs.frozen
class TenantChangesBody:
    any_of: ClassVar[tuple[str, ...]] = ("name", "disabled", "settings")

    name: Annotated[str, d.Text("a display name", max_length=200)] | None = None
    disabled: Annotated[bool, d.Flag("true refuses every request to the tenant")] | None = None
    settings: (
        Annotated[
            dict[str, Any],
            d.Entries("settings to set, as `identity tenants set` takes them; null removes one"),
        ]
        | None
    ) = None


@endpoints.get("/admin/tenants", summary="List tenants", ok=TenantList, auth=MANAGE)
@inject
async def list_tenants(
    request: web.Request, admin: TenantAdmin = Provide[Container.tenant_admin]
) -> TenantList:
    return TenantList([TenantView.of(tenant) for tenant in await admin.list()], None)


@endpoints.post(
    "/admin/tenants",
    summary="Create a tenant",
    body=NewTenantBody,
    ok=TenantView,
    status=201,
    auth=MANAGE,
    errors=("tenant_exists",),
)
@inject
async def create_tenant(
    request: web.Request,
    body: NewTenantBody,
    admin: TenantAdmin = Provide[Container.tenant_admin],
) -> TenantView:
    try:
        return TenantView.of(await admin.create(body.slug, body.name))
    except TenantChangeError as error:
        raise validation_problem([FieldError(error.field, str(error))]) from None
    except ValueError as error:  # the slug's rules
        raise validation_problem([FieldError("slug", str(error))]) from None


@endpoints.patch(
    "/admin/tenants/{slug}",
    summary="Rename, disable or enable a tenant, or change its settings",
    path_params=(SLUG,),
    body=TenantChangesBody,
    ok=TenantView,
    auth=MANAGE,
)
@inject
async def update_tenant(
    request: web.Request,
    slug: str,
    body: TenantChangesBody,
    admin: TenantAdmin = Provide[Container.tenant_admin],
    resolve: ResolveTenant = Provide[Container.resolve_tenant],
) -> TenantView:
    try:
        tenant = await admin.update(
            slug, name=body.name, disabled=body.disabled, settings=body.settings
        )
    except TenantChangeError as error:
        raise validation_problem([FieldError(error.field, str(error))]) from None
    except TenantNotFoundError:
        raise Problem.of("not_found", "No such tenant.") from None
    resolve.forget()  # this process sees the change at once; others within seconds
    return TenantView.of(tenant)
