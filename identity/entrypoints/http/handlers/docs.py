"""The OpenAPI document and a browsable page of it (Swagger UI from a CDN)."""

from __future__ import annotations

import base64
import hashlib
import html
from typing import Any, ClassVar

import attrs
from aiohttp import web

from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import OPENAPI

endpoints = d.Endpoints(tag="docs")

CACHE_FOR = "public, max-age=300"

# Swagger UI as published on npm, served by jsDelivr byte for byte. The
# Subresource Integrity hashes are of the files in the npm tarball of this
# version; a changed file is refused by the browser.
SWAGGER_UI_VERSION = "5.34.1"
SWAGGER_UI_BASE = f"https://cdn.jsdelivr.net/npm/swagger-ui-dist@{SWAGGER_UI_VERSION}/"
SWAGGER_UI_SCRIPT = (
    f"{SWAGGER_UI_BASE}swagger-ui-bundle.js",
    "sha384-XFYN47VzPiDY6qPtxYKg0nqUeW/upo20xf1j2SUE7gT/i35FJB4cuS/71Iegzk8Z",
)
SWAGGER_UI_STYLE = (
    f"{SWAGGER_UI_BASE}swagger-ui.css",
    "sha384-4c3vsE5f+trhFyHrFrLM1fFGUn531NIaC7dcqEWIJdoRQJ5CkJbSuSCwXLpaS1KF",
)

# Relative, so the page works behind a proxy that mounts the service under a prefix.
INIT_SCRIPT = (
    'window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", '
    "deepLinking: true, validatorUrl: null});"
)


def _script_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


# The strict default policy relaxed for this page only: the pinned Swagger UI
# files, its one inline start-up script (by hash), the inline styles React
# sets, the images its stylesheet embeds, and requests to this origin.
DOCS_CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {SWAGGER_UI_BASE} {_script_hash(INIT_SCRIPT)}",
        f"style-src {SWAGGER_UI_BASE} 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>identity API</title>
<link rel="stylesheet" href="{html.escape(SWAGGER_UI_STYLE[0])}"
 integrity="{SWAGGER_UI_STYLE[1]}" crossorigin="anonymous">
</head>
<body>
<noscript>This page needs JavaScript. The API description is at
<a href="openapi.json">openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="{html.escape(SWAGGER_UI_SCRIPT[0])}"
 integrity="{SWAGGER_UI_SCRIPT[1]}" crossorigin="anonymous"></script>
<script>{INIT_SCRIPT}</script>
</body>
</html>
"""


@attrs.frozen
class OpenAPIDocument:
    """An OpenAPI 3.1 document."""

    open_ended: ClassVar[bool] = True

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


@endpoints.get(
    "/openapi.json",
    operation_id="openapi",
    summary="This document",
    ok=OpenAPIDocument,
    ok_description="The OpenAPI 3.1 document.",
    storage=False,
)
async def openapi(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[OPENAPI],
        content_type="application/json",
        headers={"Cache-Control": CACHE_FOR},
    )


@endpoints.get(
    "/docs",
    operation_id="docs",
    summary="A browsable page of this document",
    ok_description="An HTML page (Swagger UI).",
    status=200,
    content="text/html",
    storage=False,
)
async def docs(request: web.Request) -> web.Response:
    # Set here, the policy wins over the strict default (which is only a default).
    return web.Response(
        text=DOCS_PAGE,
        content_type="text/html",
        headers={"Cache-Control": CACHE_FOR, "Content-Security-Policy": DOCS_CSP},
    )
