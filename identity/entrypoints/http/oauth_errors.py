"""RFC 6749 errors and form bodies of the ``/oauth2/*`` endpoints (see ``declare``), and
the shape of the errors the edge answers for them before they run (``edge_answer``)."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from aiohttp import web

from identity.domain.oauth import OAuthProtocolError, invalid_request
from identity.entrypoints.http.problems import Problem

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The browser's endpoints under /oauth2/: their errors are pages, never JSON.
BROWSER_PATHS = frozenset({"/oauth2/authorize", "/oauth2/logout"})


def _as_oauth(error: Problem | OAuthProtocolError) -> OAuthProtocolError:
    if isinstance(error, OAuthProtocolError):
        return error
    if error.code in ("invalid_api_key",):
        return OAuthProtocolError("invalid_client", error.detail, 401)
    if error.code == "insufficient_scope":
        return OAuthProtocolError("insufficient_scope", error.detail, 403)
    if error.errors:
        first = error.errors[0]
        return invalid_request(f"{first.field}: {first.message}")
    if error.status == 429:
        # As Auth0's token endpoint answers its rate limits; RFC 8628's ``slow_down``
        # is a device-flow polling signal, not this.
        return OAuthProtocolError("too_many_requests", error.detail, 429)
    if error.status == 503:
        return OAuthProtocolError("temporarily_unavailable", error.detail, 503)
    if error.status >= 500:
        return OAuthProtocolError("server_error", error.detail, error.status)
    # 413 and the rest of the 4xx: the request was bad, with its own status.
    return OAuthProtocolError("invalid_request", error.detail, error.status)


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


def plain_page(title: str, body: str, status: int = 200) -> web.Response:
    """A minimal page of the browser's ``/oauth2/*`` endpoints (``body`` is HTML)."""
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>"
        f"<h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store"},
    )


def error_page(message: str, status: int = 400) -> web.Response:
    return plain_page("Sign-in cannot continue", f"<p>{html.escape(message)}</p>", status)


def edge_answer(path: str, problem: Problem) -> web.Response | None:
    """The answer under ``/oauth2/`` to a problem the edge raised before the endpoint
    ran (a body over the limit, the global rate limit, an unknown route): an RFC 6749
    error, or an error page for the browser's endpoints, with the problem's status and
    headers (``Retry-After``). None elsewhere: problem+json."""
    if not path.startswith("/oauth2/"):
        return None
    if path not in BROWSER_PATHS:
        return oauth_error_response(problem)
    page = error_page(problem.detail, problem.status)
    page.headers.update(problem.headers)
    return page


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
