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
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
TENANT: web.RequestKey[Tenant] = web.RequestKey("tenant")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("client_ip")


def request_tenant(request: web.Request) -> Tenant:
    return request[TENANT]
