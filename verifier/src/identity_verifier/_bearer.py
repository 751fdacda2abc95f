"""What the middlewares share: reading the bearer token and shaping refusals."""

from __future__ import annotations

import json
from typing import Any, Final

from identity_verifier._errors import InvalidToken, IssuerUnavailable

IDENTITY_KEY: Final = "identity"  # request["identity"] / scope["identity"]
PROBLEM_JSON: Final = "application/problem+json"


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer ...`` header; ``InvalidToken`` if none."""
    if not authorization:
        raise InvalidToken("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("missing bearer token")
    return token


def challenge(error: InvalidToken) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 6750)."""
    description = error.reason.replace("\\", "").replace('"', "")
    return f'Bearer error="invalid_token", error_description="{description}"'


def refusal(error: InvalidToken | IssuerUnavailable) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and an RFC 9457 problem body for a refused request."""
    if isinstance(error, InvalidToken):
        status, code, title, detail = 401, "invalid_token", "Unauthorized", error.reason
        headers = {"WWW-Authenticate": challenge(error)}
    else:
        status, code, title = 503, "issuer_unavailable", "Service Unavailable"
        detail = "the token could not be checked with its issuer; try again shortly"
        headers = {"Retry-After": "5"}
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["code"] = code
    headers["Content-Type"] = PROBLEM_JSON
    headers["Cache-Control"] = "no-store"
    return status, headers, json.dumps(body).encode()


def missing_org(claims: dict[str, Any]) -> str | None:
    """Why ``claims`` do not act in an organization, or None when they do."""
    if not isinstance(claims.get("org_id"), str):
        return "the token acts in no organization: switch to one first"
    return None


def missing_permission(claims: dict[str, Any], permission: str) -> str | None:
    """Why ``claims`` lack ``permission``, or None when they hold it."""
    reason = missing_org(claims)
    if reason is not None:
        return reason
    granted = claims.get("permissions")
    if not isinstance(granted, list) or permission not in granted:
        return f"the token's roles do not grant {permission}"
    return None


def forbidden(detail: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and an RFC 9457 body for a token that lacks an organization
    or a permission (403 ``insufficient_permission``)."""
    body = {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": detail,
        "code": "insufficient_permission",
    }
    headers = {"Content-Type": PROBLEM_JSON, "Cache-Control": "no-store"}
    return 403, headers, json.dumps(body).encode()
