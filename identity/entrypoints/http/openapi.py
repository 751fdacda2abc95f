"""The OpenAPI 3.1 description of every endpoint the service answers.

Plain data built by small helpers. The integration tests hold it to the
running application: every route is described and every description is a
route, request bodies require exactly what the handlers demand, and real
answers validate against the schemas (error codes included).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable
from typing import Any

import identity
from identity.domain.otp import OtpPurpose
from identity.entrypoints.http import declare, handlers
from identity.entrypoints.http.handlers.google import CALLBACK_PATH, COOKIE
from identity.entrypoints.http.middlewares import MAX_BODY_BYTES
from identity.entrypoints.http.problems import PROBLEM_CONTENT_TYPE

Schema = dict[str, Any]

JSON = "application/json"

# code -> (status, when it is answered). Codes are fixed by the contract.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "the body is not valid JSON"),
    "otp_invalid": (
        400,
        "the code is wrong, expired, already used or unknown (one answer for all)",
    ),
    "oauth_failed": (400, "the sign-in failed; `detail` says why in words safe to show"),
    "mfa_invalid": (400, "the second-factor code is wrong or was already used"),
    "invalid_credentials": (401, "the email or password is wrong (one answer for both)"),
    "invalid_token": (
        401,
        "the token is missing, malformed, expired, of the wrong type or revoked",
    ),
    "refresh_token_reused": (
        401,
        "the refresh token was already rotated, past the grace window; its session is ended",
    ),
    "email_not_verified": (403, "the password is right but the email is not verified yet"),
    "account_disabled": (403, "the account is disabled"),
    "mfa_required": (
        403,
        "MFA is on and the session has not passed it: step up (`/auth/mfa/step-up`) first",
    ),
    "not_found": (
        404,
        "no such object among the caller's own (or the API key's tenant's); the id may be no id",
    ),
    "invalid_api_key": (401, "the API key is missing, malformed, unknown or revoked"),
    "insufficient_scope": (
        403,
        "the API key lacks the scope, acts outside its tenant, or would grant more than it has",
    ),
    "tenant_not_found": (404, "the `X-Tenant` header names no enabled tenant"),
    "email_taken": (409, "an account with this email address exists in the tenant"),
    "tenant_exists": (409, "a tenant with this slug exists"),
    "provider_not_configured": (404, "the sign-in provider is not configured for this tenant"),
    "mfa_already_enabled": (409, "MFA is on already; remove it before enrolling again"),
    "mfa_not_enabled": (409, "MFA is not on for this account"),
    "payload_too_large": (413, f"the body exceeds {MAX_BODY_BYTES // 1024} KiB"),
    "unsupported_media_type": (415, "the body is not `application/json`"),
    "validation_error": (422, "fields are missing or invalid; `errors` names each"),
    "rate_limited": (429, "too many requests; retry after `Retry-After` seconds"),
    "identity_in_use": (
        409,
        "the provider account is linked to another user, or the caller has one there already",
    ),
    "last_sign_in_method": (
        409,
        "removing it would leave the account without a password or another linked identity",
    ),
    "provider_unavailable": (
        503,
        "the sign-in provider cannot be reached, timed out or failed; retry shortly",
    ),
    "service_unavailable": (503, "a dependency (the database) is unreachable; retry shortly"),
}

# Every /auth/* endpoint: the tenant is resolved and the per-IP limit counted.
AUTH = ("tenant_not_found", "rate_limited", "service_unavailable")
# Every endpoint that reads a JSON body.
JSON_BODY = ("malformed_json", "payload_too_large", "unsupported_media_type", "validation_error")
BEARER = ("invalid_token",)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, *, required: tuple[str, ...] | None = None, **extra: Any) -> Schema:
    """An object schema; every property is required unless ``required`` says otherwise."""
    names = tuple(properties) if required is None else required
    return {"type": "object", "properties": properties, "required": list(names), **extra}


def text(description: str, *, max_length: int = 1024, **extra: Any) -> Schema:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "description": description,
        **extra,
    }


def nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def json_content(schema: Schema) -> Schema:
    return {JSON: {"schema": schema}}


def header(description: str, schema_type: str = "string", *, required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": {"type": schema_type}}


def success(description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    response: Schema = {"description": description, **extra}
    if schema is not None:
        response["content"] = json_content(schema)
    return response


RATE_LIMIT_HEADERS: Schema = {
    f"{prefix}RateLimit-{name}": header(meaning, "integer")
    for prefix in ("", "X-")
    for name, meaning in (
        ("Limit", "requests allowed in the window"),
        ("Remaining", "requests left in the window"),
        ("Reset", "seconds until the window resets"),
    )
}


def errors(*codes: str, bearer: bool = False, api_key: bool = False) -> dict[str, Schema]:
    """Problem responses for ``codes``, one per status, each listing its codes."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    responses: dict[str, Schema] = {}
    for status, found in sorted(by_status.items()):
        lines = "\n".join(f"- `{code}`: {ERROR_CODES[code][1]}" for code in found)
        base = "ValidationProblem" if status == 422 else "Problem"
        response: Schema = {
            "description": f"Problem details; `code` is one of:\n{lines}",
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": {"allOf": [ref(base), {"properties": {"code": {"enum": found}}}]}
                }
            },
        }
        response_headers: Schema = {}
        if status == 429:
            response_headers["Retry-After"] = header("seconds to wait", "integer")
            response_headers.update(RATE_LIMIT_HEADERS)
        if status == 503:
            response_headers["Retry-After"] = header("seconds to wait", "integer")
        if status == 401 and bearer:
            response_headers["WWW-Authenticate"] = header(
                '`Bearer error="invalid_token"` (with `invalid_token`)', required=False
            )
        if status == 401 and api_key:
            response_headers["WWW-Authenticate"] = header("`Bearer`", required=False)
        if response_headers:
            response["headers"] = response_headers
        responses[str(status)] = response
    return responses


def operation(
    operation_id: str,
    summary: str,
    *,
    tag: str,
    responses: dict[str, Schema],
    error_codes: tuple[str, ...] = (),
    description: str | None = None,
    body: Schema | None = None,
    bearer: bool = False,
    parameters: tuple[Schema, ...] = (),
) -> Schema:
    result: Schema = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        result["description"] = description
    params = list(parameters)
    if "tenant_not_found" in error_codes:  # the tenant is resolved from the header
        params.insert(0, {"$ref": "#/components/parameters/Tenant"})
    if params:
        result["parameters"] = params
    if body is not None:
        result["requestBody"] = {"required": True, "content": json_content(body)}
        error_codes = (*JSON_BODY, *error_codes)
    if bearer:
        result["security"] = [{"bearer": []}]
        error_codes = (*BEARER, *error_codes)
    result["responses"] = {**responses, **errors(*error_codes, bearer=bearer)}
    return result


# Request fields, named and bounded as the handlers read them (bodies.py).
EMAIL = text("an email address; normalised before any lookup", max_length=320, format="email")
PASSWORD = text("a password", max_length=4096)
NEW_PASSWORD: Schema = {
    **text(
        "a new password: 8 to 256 characters, no composition rules; the most common "
        "passwords are refused (422)",
        max_length=256,
    ),
    "minLength": 8,
}
OTP_CODE: Schema = {
    "type": "string",
    "maxLength": 16,
    "pattern": r"^\s*[0-9]{6}\s*$",
    "description": "the 6-digit code from the email",
    "examples": ["123456"],
}
REFRESH_TOKEN = text("a refresh token", max_length=4096)


def purpose(*allowed: OtpPurpose) -> Schema:
    return {
        "type": "string",
        "enum": [str(p.value) for p in allowed],
        "description": "what the code is for",
    }


CODE_PURPOSES = purpose(*OtpPurpose)
VERIFY_PURPOSES = purpose(OtpPurpose.VERIFICATION, OtpPurpose.LOGIN)

SCHEMAS: dict[str, Schema] = {
    "Problem": obj(
        {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "description": "a stable, machine-readable error code"},
        },
        description="An RFC 9457 problem.",
    ),
    "ValidationProblem": {
        "allOf": [
            ref("Problem"),
            obj(
                {
                    "errors": {
                        "type": "array",
                        "items": obj(
                            {
                                "field": {
                                    "type": "string",
                                    "description": "the body field; empty for the body itself",
                                },
                                "message": {"type": "string"},
                            }
                        ),
                    }
                }
            ),
        ],
        "description": "A problem with one entry per invalid field (`validation_error`).",
    },
    "User": obj(
        {
            "id": {"type": "string", "format": "uuid"},
            "email": {"type": "string", "format": "email"},
            "full_name": {"type": ["string", "null"]},
            "is_active": {"type": "boolean"},
            "is_verified": {"type": "boolean"},
            "has_password": {"type": "boolean"},
            "google_linked": {"type": "boolean"},
            "identities": {
                "type": "array",
                "items": {"type": "string"},
                "description": "the providers the account has linked identities at",
            },
            "mfa_enabled": {"type": "boolean", "description": "a second factor is confirmed"},
            "created_at": {"type": "string", "format": "date-time"},
            "tenant": {"type": "string", "description": "the tenant's slug"},
        }
    ),
    "TokenResponse": obj(
        {
            "access_token": {"type": "string", "description": "a signed JWT"},
            "token_type": {"type": "string", "enum": ["bearer"]},
            "expires_in": {"type": "integer", "description": "seconds the access token lives"},
            "refresh_token": {"type": "string", "description": "a signed JWT; spent on use"},
            "refresh_token_expires_in": {"type": "integer"},
            "user": ref("User"),
        }
    ),
    "MfaRequired": obj(
        {
            "mfa_required": {"type": "boolean", "enum": [True]},
            "mfa_token": {
                "type": "string",
                "description": "for `/auth/mfa/verify`: single use, bound to this client",
            },
            "methods": {
                "type": "array",
                "items": {"type": "string", "enum": ["totp", "recovery_code"]},
            },
            "expires_in": {"type": "integer", "description": "seconds the mfa_token lives"},
        },
        description="The first factor passed; MFA is on, so no tokens yet.",
    ),
    "CodeSent": obj(
        {
            "message": {"type": "string"},
            "email": {"type": "string", "description": "the normalised address"},
            "expires_in_minutes": {"type": "integer"},
        },
        description="The same answer whether or not the address has an account.",
    ),
    "Message": obj({"message": {"type": "string"}}),
    "SessionsRevoked": obj(
        {"message": {"type": "string"}, "sessions_revoked": {"type": "integer", "minimum": 0}}
    ),
    "Session": obj(
        {
            "id": {"type": "string", "format": "uuid"},
            "created_at": {"type": "string", "format": "date-time"},
            "last_used_at": {"type": "string", "format": "date-time"},
            "user_agent": {"type": ["string", "null"]},
            "ip": {"type": ["string", "null"]},
            "current": {"type": "boolean", "description": "the session of the presented token"},
            "kind": {
                "type": "string",
                "enum": ["api", "browser"],
                "description": "browser: held by a hosted page's cookie; api: by tokens",
            },
        }
    ),
    "Sessions": obj({"sessions": {"type": "array", "items": ref("Session")}}),
    "Health": obj(
        {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "checks": obj(
                {
                    "database": {"type": "string", "enum": ["ok", "unavailable"]},
                    "email": {
                        "type": "string",
                        "enum": ["ok", "degraded", "log"],
                        "description": "`log`: no SMTP host, mail goes to the log (development)",
                    },
                    "rate_limiter": {"type": "string", "enum": ["ok", "degraded"]},
                }
            ),
        }
    ),
    "JWKS": obj(
        {
            "keys": {
                "type": "array",
                "items": obj(
                    {
                        "kty": {"type": "string"},
                        "kid": {"type": "string"},
                        "alg": {"type": "string"},
                        "use": {"type": "string", "enum": ["sig"]},
                    },
                    additionalProperties=True,
                ),
            }
        }
    ),
    "OpenIDConfiguration": obj(
        {
            "issuer": {"type": "string", "format": "uri"},
            "jwks_uri": {"type": "string", "format": "uri"},
            "id_token_signing_alg_values_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
            "claims_supported": {"type": "array", "items": {"type": "string"}},
            "introspection_endpoint": {"type": "string", "format": "uri"},
            "authorization_endpoint": {"type": "string", "format": "uri"},
            "token_endpoint": {"type": "string", "format": "uri"},
            "userinfo_endpoint": {"type": "string", "format": "uri"},
            "revocation_endpoint": {"type": "string", "format": "uri"},
            "response_types_supported": {"type": "array", "items": {"type": "string"}},
            "grant_types_supported": {"type": "array", "items": {"type": "string"}},
            "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
            "token_endpoint_auth_methods_supported": {
                "type": "array",
                "items": {"type": "string"},
            },
            "scopes_supported": {"type": "array", "items": {"type": "string"}},
            "subject_types_supported": {"type": "array", "items": {"type": "string"}},
            "authorization_response_iss_parameter_supported": {"type": "boolean"},
            "backchannel_logout_supported": {"type": "boolean"},
            "backchannel_logout_session_supported": {"type": "boolean"},
        },
        required=(
            "issuer",
            "jwks_uri",
            "id_token_signing_alg_values_supported",
            "claims_supported",
            "authorization_endpoint",
            "token_endpoint",
            "response_types_supported",
            "subject_types_supported",
        ),
        additionalProperties=True,
    ),
}

SIGNED_IN: Schema = {"oneOf": [ref("TokenResponse"), ref("MfaRequired")]}
TOKENS = {
    "200": success(
        "Signed in: a token pair; or, with MFA on, the `mfa_required` answer and no tokens.",
        SIGNED_IN,
    )
}
CODE_SENT = {
    "202": success("Accepted; a code is on its way if the address can receive it.", ref("CodeSent"))
}


def message(description: str) -> dict[str, Schema]:
    return {"200": success(description, ref("Message"))}


def _request_code(operation_id: str, summary: str, description: str) -> Schema:
    return operation(
        operation_id,
        summary,
        tag="accounts",
        description=description,
        body=obj({"email": EMAIL, "purpose": CODE_PURPOSES}),
        responses=CODE_SENT,
        error_codes=AUTH,
    )


def _paths() -> dict[str, Schema]:
    google_cookie = {
        "name": COOKIE,
        "in": "cookie",
        "required": False,
        "description": "binds the sign-in to the browser that started it (set by the login)",
        "schema": {"type": "string"},
    }
    return {
        "/auth/register": {
            "post": operation(
                "register",
                "Create an unverified account and email a verification code",
                tag="accounts",
                description=(
                    "The answer is the same whether the email is new, unverified or already "
                    "verified. `password` may be left out for an account that signs in with "
                    "emailed codes only."
                ),
                body=obj(
                    {
                        "email": EMAIL,
                        "password": nullable(NEW_PASSWORD),
                        "full_name": nullable(text("a display name", max_length=200)),
                    },
                    required=("email",),
                ),
                responses=CODE_SENT,
                error_codes=AUTH,
            )
        },
        "/auth/request-otp": {
            "post": _request_code(
                "requestOtp",
                "Email a one-time code",
                "The same answer whether or not the account exists; a new code replaces the "
                "previous one for the email and purpose.",
            )
        },
        "/auth/resend-otp": {
            "post": _request_code(
                "resendOtp", "Email a one-time code (alias of request-otp)", "As `request-otp`."
            )
        },
        "/auth/verify-otp": {
            "post": operation(
                "verifyOtp",
                "Sign in with an emailed code",
                tag="accounts",
                description=(
                    "`verification` activates the account and signs in; `login` signs in "
                    "without a password (and activates an unverified account)."
                ),
                body=obj({"email": EMAIL, "otp_code": OTP_CODE, "purpose": VERIFY_PURPOSES}),
                responses=TOKENS,
                error_codes=("otp_invalid", "account_disabled", *AUTH),
            )
        },
        "/auth/reset-password": {
            "post": operation(
                "resetPassword",
                "Set a new password with a `password_reset` code",
                tag="accounts",
                description="Every session of the account is ended.",
                body=obj({"email": EMAIL, "otp_code": OTP_CODE, "new_password": NEW_PASSWORD}),
                responses=message("The password is set."),
                error_codes=("otp_invalid", "account_disabled", *AUTH),
            )
        },
        "/auth/login": {
            "post": operation(
                "login",
                "Sign in with email and password",
                tag="accounts",
                body=obj({"email": EMAIL, "password": PASSWORD}),
                responses=TOKENS,
                error_codes=(
                    "invalid_credentials",
                    "email_not_verified",
                    "account_disabled",
                    *AUTH,
                ),
            )
        },
        "/auth/refresh-token": {
            "post": operation(
                "refreshToken",
                "Rotate a refresh token",
                tag="sessions",
                description=(
                    "The presented token is spent. Presented again within the grace window it "
                    "answers the same new refresh token; after it, `refresh_token_reused` and "
                    "the session is ended."
                ),
                body=obj({"refresh_token": REFRESH_TOKEN}),
                responses={
                    "200": success("A new token pair.", ref("TokenResponse")),
                },
                error_codes=("invalid_token", "refresh_token_reused", "account_disabled", *AUTH),
            )
        },
        "/auth/logout": {
            "post": operation(
                "logout",
                "End the session of a refresh token",
                tag="sessions",
                description="Idempotent.",
                body=obj({"refresh_token": REFRESH_TOKEN}),
                responses=message("Logged out."),
                error_codes=("invalid_token", *AUTH),
            )
        },
        "/auth/logout-all": {
            "post": operation(
                "logoutAll",
                "End every session of the caller",
                tag="sessions",
                bearer=True,
                responses={"200": success("Every session is ended.", ref("SessionsRevoked"))},
                error_codes=AUTH,
            )
        },
        "/auth/change-password": {
            "post": operation(
                "changePassword",
                "Change the caller's password",
                tag="sessions",
                description="Every other session of the account is ended.",
                bearer=True,
                body=obj({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
                responses=message("The password is changed."),
                error_codes=("invalid_credentials", "mfa_required", *AUTH),
            )
        },
        "/auth/me": {
            "get": operation(
                "me",
                "The caller's account",
                tag="sessions",
                bearer=True,
                responses={"200": success("The account.", ref("User"))},
                error_codes=AUTH,
            )
        },
        "/auth/sessions": {
            "get": operation(
                "listSessions",
                "The caller's active sessions",
                tag="sessions",
                bearer=True,
                responses={"200": success("The sessions.", ref("Sessions"))},
                error_codes=AUTH,
            )
        },
        "/auth/sessions/{session_id}": {
            "delete": operation(
                "deleteSession",
                "End one of the caller's sessions",
                tag="sessions",
                bearer=True,
                parameters=(
                    {
                        "name": "session_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ),
                responses={"204": {"description": "The session is ended."}},
                error_codes=("not_found", *AUTH),
            )
        },
        "/auth/google/login": {
            "get": operation(
                "googleLogin",
                "Start signing in with Google",
                tag="google",
                description=(
                    "OpenID Connect authorization-code flow with `state`, `nonce` and PKCE S256."
                ),
                parameters=(
                    {
                        "name": "redirect_to",
                        "in": "query",
                        "required": False,
                        "description": (
                            "where to send the browser afterwards, with the tokens in the URL "
                            "fragment; must be in `IDENTITY_OAUTH_REDIRECT_ALLOWLIST`"
                        ),
                        "schema": {"type": "string", "format": "uri"},
                    },
                ),
                responses={
                    "302": {
                        "description": "To the provider's authorization page.",
                        "headers": {
                            "Location": header("the provider's authorization URL"),
                            "Set-Cookie": header(f"`{COOKIE}`: binds the flow to this browser"),
                        },
                    }
                },
                error_codes=(
                    "oauth_failed",
                    "provider_not_configured",
                    "provider_unavailable",
                    *AUTH,
                ),
            )
        },
        CALLBACK_PATH: {
            "get": operation(
                "googleCallback",
                "Finish signing in with Google",
                tag="google",
                description=(
                    "Validates the state, exchanges the code with the PKCE verifier and checks "
                    "the ID token. An existing account with the same email is linked only when "
                    "the provider verified the email."
                ),
                parameters=(
                    {
                        "name": "code",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "error",
                        "in": "query",
                        "required": False,
                        "description": "set by the provider when the user refused",
                        "schema": {"type": "string"},
                    },
                    google_cookie,
                ),
                responses={
                    "200": success(
                        "Signed in: a token pair (or, with MFA on, the `mfa_required` answer); "
                        "for a flow started by a link, the new link.",
                        {
                            "oneOf": [
                                ref("TokenResponse"),
                                ref("MfaRequired"),
                                ref("LinkedIdentityView"),
                            ]
                        },
                    ),
                    "302": {
                        "description": (
                            "Signed in: to the allowed `redirect_to`, with the token fields (or, "
                            "with MFA on, the `mfa_required` fields; or `linked=google`) in the "
                            "URL fragment."
                        ),
                        "headers": {"Location": header("`redirect_to#access_token=...`")},
                    },
                },
                error_codes=(
                    "oauth_failed",
                    "account_disabled",
                    "identity_in_use",
                    "provider_not_configured",
                    "provider_unavailable",
                    *AUTH,
                ),
            )
        },
        "/health": {
            "get": operation(
                "health",
                "Liveness and dependencies",
                tag="system",
                description=(
                    "Not rate limited. The database check is at most one second old "
                    "(one probe a second however often this is polled)."
                ),
                responses={
                    "200": success("Serving.", ref("Health")),
                    "503": success(
                        "The database is unreachable.",
                        ref("Health"),
                        headers={"Retry-After": header("seconds to wait", "integer")},
                    ),
                },
            )
        },
        "/metrics": {
            "get": operation(
                "metrics",
                "Prometheus metrics",
                tag="system",
                description="Not rate limited.",
                responses={
                    "200": {
                        "description": "The Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/.well-known/jwks.json": {
            "get": operation(
                "jwks",
                "Public keys that verify access tokens",
                tag="system",
                responses={"200": success("The JSON Web Key Set.", ref("JWKS"))},
                error_codes=("rate_limited",),
            )
        },
        "/.well-known/openid-configuration": {
            "get": operation(
                "openidConfiguration",
                "OpenID discovery document",
                tag="system",
                responses={"200": success("The discovery document.", ref("OpenIDConfiguration"))},
                error_codes=("rate_limited",),
            )
        },
        "/.well-known/oauth-authorization-server": {
            "get": operation(
                "oauthAuthorizationServer",
                "OAuth 2.0 authorization server metadata (RFC 8414): the same document",
                tag="system",
                responses={"200": success("The metadata.", ref("OpenIDConfiguration"))},
                error_codes=("rate_limited",),
            )
        },
        "/openapi.json": {
            "get": operation(
                "openapi",
                "This document",
                tag="docs",
                responses={"200": success("The OpenAPI 3.1 document.", {"type": "object"})},
                error_codes=("rate_limited",),
            )
        },
        "/docs": {
            "get": operation(
                "docs",
                "A browsable page of this document",
                tag="docs",
                responses={
                    "200": {
                        "description": "An HTML page (Swagger UI).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
                error_codes=("rate_limited",),
            )
        },
    }


DESCRIPTION = f"""\
A self-hosted identity service: accounts, one-time codes, tokens, sessions and
Google sign-in.

- JSON in, JSON out. Bodies over {MAX_BODY_BYTES // 1024} KiB are refused.
- Every error is an RFC 9457 `{PROBLEM_CONTENT_TYPE}` body with a stable `code`.
- Every response carries `X-Request-ID`; rate-limited endpoints also carry
  `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (and `X-RateLimit-*`).
- The tenant is chosen by the `X-Tenant` header (its slug), else `default`.
- Access tokens are JWTs verifiable with the keys at `/.well-known/jwks.json`.
"""


TENANT_PARAMETER: Schema = {"$ref": "#/components/parameters/Tenant"}


_OAUTH_ERROR: Schema = {
    "description": "an RFC 6749 error: `invalid_request`, `invalid_client` (401, with "
    "`WWW-Authenticate`), `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, "
    "`invalid_scope`, `invalid_target`, `insufficient_scope` (403), `invalid_token` (401)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
                "required": ["error"],
            }
        }
    },
}
OAUTH_ERRORS: dict[str, Schema] = {status: _OAUTH_ERROR for status in ("400", "401", "403", "413")}


def declared_operation(entry: declare.Declared, components: declare.Components) -> Schema:
    """The operation of an endpoint declared with ``declare.Endpoints``."""
    result: Schema = {
        "operationId": entry.operation_id,
        "summary": entry.summary,
        "tags": [entry.tag],
    }
    if entry.description:
        result["description"] = entry.description
    codes: list[str] = []
    parameters: list[Schema] = []
    if entry.path.startswith("/auth/") or (entry.auth and entry.auth.scope):
        parameters.append(TENANT_PARAMETER)
    if entry.path.startswith("/auth/"):
        codes.append("tenant_not_found")
    codes += ["rate_limited", "service_unavailable"]
    if entry.auth is not None:
        result["security"] = [{entry.auth.scheme: []}]
        codes = [*entry.auth.error_codes, *codes]
    if entry.path_params:
        parameters += [param.schema() for param in entry.path_params]
        codes.append("not_found")
    if entry.query is not None:
        parameters += declare.query_parameters(entry.query)
        codes.append("validation_error")
    if parameters:
        result["parameters"] = parameters
    if entry.body is not None:
        schema = declare.request_schema(entry.body)
        content = json_content(schema)
        if entry.forms:
            content[declare.FORM] = {"schema": schema}
        if entry.oauth_errors:  # RFC 6749: form bodies only
            content = {declare.FORM: {"schema": schema}}
        result["requestBody"] = {"required": True, "content": content}
        codes = [*JSON_BODY, *codes]
    codes += entry.errors
    ok: Schema = {"description": entry.ok_description}
    if entry.ok is not None:
        ok["content"] = json_content(declare.response_schema(entry.ok, components))
    if entry.headers:
        ok["headers"] = {name: header(meaning) for name, meaning in entry.headers}
    redirect: Schema = {}
    if entry.redirect is not None:
        redirect["302"] = {
            "description": entry.redirect,
            "headers": {"Location": header("where the browser goes next")},
        }
    if entry.html:
        page = {"description": "an HTML page", "content": {"text/html": {"schema": {}}}}
        moved = {
            "description": entry.redirect or "a redirect",
            "headers": {"Location": header("where the browser goes next")},
        }
        result["responses"] = {
            "200": {**page, "description": entry.ok_description},
            "302": moved,
            "303": moved,
            "400": {**page, "description": "an error page; never a redirect"},
            "403": {**page, "description": "a refused form (another site, a stale form)"},
            **errors("rate_limited", "service_unavailable"),
        }
        return result
    if entry.oauth_errors:
        result["responses"] = {
            str(entry.status): ok,
            **redirect,
            **OAUTH_ERRORS,
            **errors("rate_limited", "service_unavailable", *entry.errors),
        }
        return result
    result["responses"] = {
        str(entry.status): ok,
        **redirect,
        **errors(
            *codes,
            bearer=entry.auth is declare.BEARER,
            api_key=entry.auth is not None and entry.auth.scope is not None,
        ),
    }
    return result


def declared_paths(
    endpoints: Iterable[declare.Endpoints], components: declare.Components
) -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for entry in (entry for group in endpoints for entry in group.declared):
        if not entry.document:
            continue
        operation = declared_operation(entry, components)
        paths.setdefault(entry.path, {})[entry.method.lower()] = operation
    return paths


def _merged(written: dict[str, Schema], declared: dict[str, Schema]) -> dict[str, Schema]:
    """Both kinds of path item; one path may have methods of each (``/auth/me``)."""
    paths = {path: dict(item) for path, item in written.items()}
    for path, item in declared.items():
        paths.setdefault(path, {}).update(item)
    return paths


def openapi_document(
    issuer: str, endpoints: Iterable[declare.Endpoints] | None = None
) -> dict[str, Any]:
    """The whole document for a deployment whose public base URL is ``issuer``.

    ``endpoints``: those the app serves (default: every handler module's).
    ``declare.DuplicateSchemaError`` when two classes would share a schema name.
    """
    if endpoints is None:
        endpoints = declare.collect(handlers)
    components = declare.Components(copy.deepcopy(SCHEMAS))
    paths = _merged(_paths(), declared_paths(endpoints, components))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "identity",
            "version": identity.__version__,
            "description": DESCRIPTION,
        },
        "servers": [{"url": issuer.rstrip("/") or "/"}],
        "tags": [
            {"name": "accounts", "description": "Registration, codes, passwords, sign-in."},
            {"name": "sessions", "description": "Tokens and sessions."},
            {"name": "google", "description": "Sign-in with Google (OpenID Connect)."},
            {
                "name": "providers",
                "description": "Sign-in with GitHub and the configured OpenID Connect providers.",
            },
            {"name": "identities", "description": "The signed-in user's linked identities."},
            {"name": "mfa", "description": "Multi-factor authentication (TOTP, recovery codes)."},
            {"name": "system", "description": "Health, metrics and key discovery."},
            {"name": "docs", "description": "This description."},
        ],
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "parameters": {
                "Tenant": {
                    "name": "X-Tenant",
                    "in": "header",
                    "required": False,
                    "description": "the tenant's slug; `default` when absent",
                    "schema": {
                        "type": "string",
                        "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$",
                    },
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token from a token response",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "idk_<id>_<secret>",
                    "description": "an API key: `identity apikeys create`, `POST /admin/api-keys`",
                },
            },
        },
    }


@functools.lru_cache(maxsize=8)
def openapi_json(issuer: str, endpoints: tuple[declare.Endpoints, ...]) -> bytes:
    """The document serialised once per issuer (the app makes it when it is created)."""
    return json.dumps(openapi_document(issuer, endpoints), separators=(",", ":")).encode()
