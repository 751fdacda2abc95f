"""Small JSON fetches from the issuer, bounded in time and size."""

from __future__ import annotations

import json
import re
from typing import Any, Final

import aiohttp

MAX_DOCUMENT_BYTES: Final = 256 * 1024
# Per request too, since a session passed in may have no timeout of its own.
FETCH_TIMEOUT: Final = aiohttp.ClientTimeout(total=5)
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


class FetchError(Exception):
    """The issuer did not give a usable JSON document; the text is safe to log."""


def max_age(cache_control: str | None, default: float, ceiling: float) -> float:
    """Seconds a response may be reused, from its ``Cache-Control`` header."""
    if not cache_control:
        return default
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(cache_control)
    if match is None:
        return default
    return min(float(match.group(1)), ceiling)


async def read_json(response: aiohttp.ClientResponse) -> Any:
    if response.status != 200:
        raise FetchError(f"{response.url} answered {response.status}")
    if response.content_length is not None and response.content_length > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{response.url} sent a document over {MAX_DOCUMENT_BYTES} bytes")
    body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise FetchError(f"{response.url} sent a document over {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise FetchError(f"{response.url} sent malformed JSON") from None
