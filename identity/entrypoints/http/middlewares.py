"""The one middleware: request id, access log, metrics, the single error path, CORS
preflights, and the per-request protection (``protection.py``); and the headers.

One middleware rather than a chain of them: each aiohttp middleware layer costs a
wrapper call and a partial per request, a measurable share of a cheap one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.domain.errors import DomainError, StorageUnavailableError
from identity.entrypoints.http.error_codes import ERROR_CODES
from identity.entrypoints.http.keys import METRICS, REQUEST_ID, SETTINGS
from identity.entrypoints.http.limits import MAX_BODY_BYTES as MAX_BODY_BYTES
from identity.entrypoints.http.oauth_errors import edge_answer
from identity.entrypoints.http.problems import (
    Problem,
    problem_for,
    problem_response,
    unavailable_problem,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Runs between the error path and the handler: the client address, the limits, the tenant.
Guard = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


access_log = logging.getLogger("identity.access")
error_log = logging.getLogger("identity.errors")

_ids = random.Random()  # noqa: S311 - request ids are not secrets
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _request_id(request: web.Request) -> str:
    inbound = request.headers.get("X-Request-ID", "")
    if _SANE_REQUEST_ID.match(inbound):
        return inbound
    # A correlation id, not a secret: no need for the OS's random source per request.
    return f"{_ids.getrandbits(128):032x}"


def _http_problem(error: web.HTTPException) -> Problem:
    code = _HTTP_CODES.get(error.status)
    if code is None:
        code, title = error.reason.lower().replace(" ", "_"), error.reason
    else:
        title = ERROR_CODES[code].title
    headers = {}
    if "Allow" in error.headers:
        headers["Allow"] = error.headers["Allow"]
    detail = {
        404: "No such resource.",
        405: f"{title} on this resource.",
        413: f"The request body exceeds {MAX_BODY_BYTES // 1024} KiB.",
    }.get(error.status, title)
    return Problem(error.status, code, title, detail, headers=headers)


def edge(cors_origins: tuple[str, ...], guard: Guard) -> Middleware:
    """Request id, the one error path, the access log (path only, never the query)."""
    preflight_origins = frozenset(cors_origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = _request_id(request)
        request[REQUEST_ID] = request_id
        started = time.perf_counter()
        status = 500
        try:
            response = await _answer(request, handler, request_id, guard, preflight_origins)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            elapsed_ms = (time.perf_counter() - started) * 1000
            fields = {
                "method": request.method,
                "path": request.path,
                "status": status,
                "duration_ms": round(elapsed_ms, 2),
                "request_id": request_id,
            }
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.observe(request, status, elapsed_ms / 1000)
            slow_ms = request.app[SETTINGS].slow_request_ms
            if elapsed_ms > slow_ms:
                access_log.warning("slow request", extra=fields)
            elif status == 200 and request.path == "/health":
                # A load balancer polls many times a second: its successful polls
                # would drown the access log (a 503 is still logged at info).
                access_log.debug("request", extra=fields)
            else:
                access_log.info("request", extra=fields)

    return middleware


async def _answer(
    request: web.Request,
    handler: Handler,
    request_id: str,
    guard: Guard,
    preflight_origins: frozenset[str],
) -> web.StreamResponse:
    try:
        length = request.content_length
        # A declared streamed body (``stream_in``) is read by its handler, of any size.
        unbounded = getattr(request.match_info.handler, "unbounded_body", False)
        if length is not None and length > MAX_BODY_BYTES and not unbounded:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY_BYTES, actual_size=length)
        if request.method == "OPTIONS" and _is_preflight(request, preflight_origins):
            return _preflight()
        return await guard(request, handler)
    except Problem as raised:
        return _refusal(request, raised)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _refusal(request, _http_problem(error))
    except DomainError as error:
        mapped = problem_for(error)
        if mapped is None:
            error_log.exception("unmapped domain error", extra={"request_id": request_id})
            return _refusal(request, Problem.of("internal_error"))
        return _refusal(request, mapped)
    except asyncio.CancelledError:
        raise
    except Exception as error:
        if isinstance(error, StorageUnavailableError) or is_unavailable(error):
            error_log.warning(
                "dependency unavailable: %s", type(error).__name__, extra={"request_id": request_id}
            )
            return _refusal(request, unavailable_problem())
        error_log.exception("unexpected error", extra={"request_id": request_id})
        return _refusal(request, Problem.of("internal_error", "An unexpected error occurred."))


def _refusal(request: web.Request, problem: Problem) -> web.Response:
    """problem+json, but under ``/oauth2/`` what an OAuth client or a browser expects."""
    return edge_answer(request.path, problem) or problem_response(problem)


def _is_preflight(request: web.Request, allowed: frozenset[str]) -> bool:
    """A CORS preflight from a configured origin (answered before limits and tenants).

    The allow headers of actual responses are added in ``add_security_headers``,
    so error answers (which leave handlers as exceptions) carry them too and a
    browser app can read a 401 or a 422.
    """
    return (
        "Access-Control-Request-Method" in request.headers
        and request.headers.get("Origin") in allowed
    )


def _preflight() -> web.Response:
    response = web.Response(status=204)
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = (
        "Authorization, Content-Type, X-Request-ID, X-Tenant"
    )
    response.headers["Access-Control-Max-Age"] = "600"
    return response


def _add_cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin is None or origin not in request.app[SETTINGS].cors_origins:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Access-Control-Expose-Headers"] = (
        "X-Request-ID, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset"
    )
    response.headers.add("Vary", "Origin")


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Runs for every response, including aiohttp's own error pages."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/auth/") or request.path == "/auth":
        response.headers["Cache-Control"] = "no-store"
    if request.app[SETTINGS].hsts:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    response.headers["Server"] = "identity"
    if REQUEST_ID in request and "X-Request-ID" not in response.headers:
        response.headers["X-Request-ID"] = request[REQUEST_ID]
    _add_cors_headers(request, response)
