"""Typed keys for application and request state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from identity.domain.tenants import Tenant

if TYPE_CHECKING:
    from identity.entrypoints.container import Container
    from identity.entrypoints.http.metrics import Metrics
    from identity.entrypoints.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CONTAINER: web.AppKey[Container] = web.AppKey("container")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
REQUEST_ID = "identity.request_id"
TENANT = "identity.tenant"
CLIENT_IP = "identity.client_ip"


def request_tenant(request: web.Request) -> Tenant:
    tenant = request[TENANT]
    assert isinstance(tenant, Tenant)
    return tenant
