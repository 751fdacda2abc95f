"""A test-only check that every answer is one its operation declares.

``watch(app)`` adds an outermost middleware to an app before it starts: each
answer of a declared route is compared with the app's own OpenAPI document
(its status listed, a problem's ``code`` among those listed for that status,
the content type listed). Whatever breaks the declaration is collected in the
returned list; the integration suite's ``make_api`` fails a test that leaves
anything there, so a handler cannot answer a shape its declaration omits.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from identity.entrypoints.http.keys import OPENAPI
from identity.entrypoints.http.middlewares import Handler
from identity.entrypoints.http.problems import PROBLEM_CONTENT_TYPE

Responses = dict[str, dict[str, Any]]


def _operations(app: web.Application) -> dict[tuple[str, str], Responses]:
    document = json.loads(app[OPENAPI])
    return {
        (method.upper(), path): operation["responses"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def _codes(response: dict[str, Any]) -> list[str] | None:
    schema = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {}).get("schema")
    if schema is None:
        return None
    return list(schema["allOf"][1]["properties"]["code"]["enum"])


def breach(responses: Responses, status: int, content_type: str, body: bytes) -> str | None:
    """Why an answer is not one of ``responses``, or None when it is."""
    declared = responses.get(str(status))
    if declared is None:
        return f"undeclared status {status}: {body[:300]!r}"
    content = declared.get("content")
    if content is None:
        return None if not body else f"{status} declares no body: {body[:300]!r}"
    if content_type not in content:
        return f"{status} {content_type} is not among {sorted(content)}"
    if content_type == PROBLEM_CONTENT_TYPE:
        code = json.loads(body).get("code")
        codes = _codes(declared) or []
        if code not in codes:
            return f"{status} code {code!r} is not among {codes}"
    return None


def watch(app: web.Application) -> list[str]:
    """Check every answer of ``app``'s declared routes; breaches are appended to the list."""
    breaches: list[str] = []
    operations: dict[tuple[str, str], Responses] = {}

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        route = request.match_info.route
        if request.match_info.http_exception is not None or route.resource is None:
            return response  # no route: 404/405 before any handler
        if not operations:
            operations.update(_operations(request.app))
        responses = operations.get((request.method, route.resource.canonical))
        if responses is None or not isinstance(response, web.Response):
            return response  # a page, or a streamed answer
        if response.status == 500:
            return response  # a bug, never declared: the tests that provoke one check it
        body = response.body if isinstance(response.body, bytes) else b""
        found = breach(responses, response.status, response.content_type, body)
        if found is not None:
            breaches.append(f"{request.method} {route.resource.canonical}: {found}")
        return response

    app.middlewares.insert(0, check)
    return breaches
