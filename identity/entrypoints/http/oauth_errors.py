"""RFC 6749 errors and form bodies of the ``/oauth2/*`` endpoints (see ``declare``)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from aiohttp import web

from identity.domain.oauth import OAuthProtocolError, invalid_request
from identity.entrypoints.http.problems import Problem

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _as_oauth(error: Problem | OAuthProtocolError) -> OAuthProtocolError:
    if isinstance(error, OAuthProtocolError):
        return error
    if error.code in ("invalid_api_key",):
        return OAuthProtocolError("invalid_client", error.detail, 401)
    if error.code == "insufficient_scope":
        return OAuthProtocolError("insufficient_scope", error.detail, 403)
    if error.status == 413:
        return OAuthProtocolError("invalid_request", error.detail, 413)
    if error.errors:
        first = error.errors[0]
        return invalid_request(f"{first.field}: {first.message}")
    if error.status >= 500 or error.status == 429:
        return OAuthProtocolError(
            "temporarily_unavailable" if error.status != 429 else "slow_down",
            error.detail,
            error.status,
        )
    return invalid_request(error.detail)


def oauth_error_response(error: Problem | OAuthProtocolError) -> web.Response:
    """``{"error", "error_description"}``; ``invalid_client`` adds ``WWW-Authenticate``."""
    oauth = _as_oauth(error)
    headers = dict(NO_STORE)
    if isinstance(error, Problem):
        headers.update({k: v for k, v in error.headers.items() if k != "WWW-Authenticate"})
    if oauth.error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="identity"'
    body = {"error": oauth.error, "error_description": oauth.description}
    return web.Response(
        status=oauth.status,
        text=json.dumps(body),
        content_type="application/json",
        headers=headers,
    )


async def read_oauth_form(request: web.Request) -> Mapping[str, str]:
    """The form of an OAuth request: only ``application/x-www-form-urlencoded``; a
    parameter sent twice is ``invalid_request`` (RFC 6749 §3.1); unknown ones stay
    unread (§3.2: ignored)."""
    if request.content_type != FORM:
        raise invalid_request(f"send the body as {FORM}")
    return single_values(await read_form(request))


async def read_form(request: web.Request) -> Mapping[str, object]:
    """``request.post()``, with undecodable bytes an ``invalid_request``."""
    try:
        return await request.post()
    except (UnicodeDecodeError, ValueError):
        raise invalid_request("the form is not valid UTF-8 form data") from None


def single_values(params: Mapping[str, object]) -> dict[str, str]:
    """``params`` as one string each; a repeated name or a file is ``invalid_request``."""
    pairs = list(params.items())  # a multidict gives each repeated name once per value
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise invalid_request(f"parameter sent more than once: {', '.join(repeated)}")
    values: dict[str, str] = {}
    for key, value in pairs:
        if not isinstance(value, str):
            raise invalid_request(f"{key}: must be text")
        values[key] = value
    return values
