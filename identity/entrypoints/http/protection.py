"""Per-request protection: client address, the global per-IP limit, the tenant."""

from __future__ import annotations

import functools
from ipaddress import IPv6Address, IPv6Network, ip_address

from aiohttp import web

from identity.application.ports import RateLimiter
from identity.application.tenancy import ResolveTenant
from identity.entrypoints.client_ip import client_ip
from identity.entrypoints.http.keys import CLIENT_IP, TENANT
from identity.entrypoints.http.middlewares import Guard, Handler
from identity.entrypoints.http.problems import rate_limit_headers, rate_limited_problem
from identity.entrypoints.settings import Settings

IPV6_CLIENT_PREFIX = 64


def rate_limit_client(address: str) -> str:
    """The key the per-IP limit counts ``address`` under.

    An IPv6 client usually holds a whole /64 and can pick any address in it,
    so the /64 is one client; IPv4 addresses count alone.
    """
    try:
        parsed = ip_address(address)
    except ValueError:
        return address  # "unknown", a Unix socket
    if isinstance(parsed, IPv6Address):
        return str(IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False))
    return str(parsed)


def protect(
    settings: Settings,
    limiter: RateLimiter,
    resolve_tenant: ResolveTenant,
    not_limited: frozenset[str],
) -> Guard:
    """The guard the edge middleware runs before every handler.

    ``not_limited``: the paths the per-IP limit does not count (declared ``limited=False``).
    """
    trusted = settings.trusted_proxies

    # Parsing addresses is a measurable share of a cheap request; the same
    # clients come back again and again.
    @functools.lru_cache(maxsize=4096)
    def addresses(peer: str | None, forwarded: str | None) -> tuple[str, str]:
        address = client_ip(peer, forwarded, trusted)
        return address, f"ip:{rate_limit_client(address)}"

    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
        address, limit_key = addresses(request.remote, forwarded or None)
        request[CLIENT_IP] = address
        if request.path in not_limited:
            return await handler(request)
        decision = await limiter.hit(limit_key, settings.rate_limit_global)
        if not decision.allowed:
            raise rate_limited_problem(decision)
        # Unknown routes and methods answer 404/405 before any tenant lookup.
        if request.path.startswith("/auth/") and request.match_info.http_exception is None:
            request[TENANT] = await resolve_tenant(request.headers.get("X-Tenant"))
        response = await handler(request)
        for name, value in rate_limit_headers(decision).items():
            response.headers.setdefault(name, value)
        return response

    return guard
