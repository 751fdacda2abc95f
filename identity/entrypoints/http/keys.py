"""Typed keys for application and request state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from identity.domain.tenants import Tenant

if TYPE_CHECKING:
    from identity.application.api_keys import ServicePrincipal
    from identity.application.sessions import Principal
    from identity.entrypoints.container import Container
    from identity.entrypoints.http.metrics import Metrics
    from identity.entrypoints.settings import Settings

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CONTAINER: web.AppKey[Container] = web.AppKey("container")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
OPENAPI: web.AppKey[bytes] = web.AppKey("openapi")
"""The OpenAPI document of the app's endpoints, serialised when the app is created."""
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
TENANT: web.RequestKey[Tenant] = web.RequestKey("tenant")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("client_ip")
USER: web.RequestKey[Principal] = web.RequestKey("user")
SERVICE: web.RequestKey[ServicePrincipal] = web.RequestKey("service")


def request_tenant(request: web.Request) -> Tenant:
    return request[TENANT]
