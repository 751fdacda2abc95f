"""Reading a request body as a JSON object (``declare.parse`` then reads its fields)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from identity.entrypoints.http.problems import FieldError, Problem, validation_problem


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Problem.of("unsupported_media_type", "Send the body as application/json.")
    raw = await request.read()  # bounded by the app's client_max_size (64 KiB)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Problem.of("malformed_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise validation_problem([FieldError("", "the body must be a JSON object")])
    return data
