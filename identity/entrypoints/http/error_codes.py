"""Every problem ``code`` of the API: its status, its title, and when it is answered.

The one table of them: ``Problem.of(code)`` takes the status and title from
here, the domain errors of ``problems.py`` name their code, and the OpenAPI
document lists the codes of each operation with the ``when`` text. A new code
is one line here.
"""

from __future__ import annotations

import attrs

from identity.entrypoints.http.limits import MAX_BODY_BYTES


@attrs.frozen
class ErrorCode:
    code: str
    status: int
    title: str
    when: str
    """When it is answered, for the document."""


ERROR_CODES: dict[str, ErrorCode] = {
    entry.code: entry
    for entry in (
        ErrorCode("malformed_json", 400, "Malformed JSON", "the body is not valid JSON"),
        ErrorCode(
            "bad_request",
            400,
            "Bad request",
            "the request cannot be parsed (a malformed header, cookie or request line)",
        ),
        ErrorCode(
            "otp_invalid",
            400,
            "Invalid code",
            "the code is wrong, expired, already used or unknown (one answer for all)",
        ),
        ErrorCode(
            "oauth_failed",
            400,
            "Sign-in failed",
            "the sign-in failed; `detail` says why in words safe to show",
        ),
        ErrorCode(
            "mfa_invalid",
            400,
            "Invalid code",
            "the second-factor code is wrong or was already used",
        ),
        ErrorCode(
            "invalid_credentials",
            401,
            "Invalid credentials",
            "the email or password is wrong (one answer for both)",
        ),
        ErrorCode(
            "invalid_token",
            401,
            "Invalid token",
            "the token is missing, malformed, expired, of the wrong type or revoked",
        ),
        ErrorCode(
            "refresh_token_reused",
            401,
            "Refresh token reused",
            "the refresh token was already rotated, past the grace window; its session is ended",
        ),
        ErrorCode(
            "invalid_api_key",
            401,
            "Invalid API key",
            "the API key is missing, malformed, unknown or revoked",
        ),
        ErrorCode(
            "email_not_verified",
            403,
            "Email not verified",
            "the password is right but the email is not verified yet",
        ),
        ErrorCode("account_disabled", 403, "Account disabled", "the account is disabled"),
        ErrorCode(
            "mfa_required",
            403,
            "Second factor required",
            "MFA is on and the session has not passed it: step up (`/auth/mfa/step-up`) first",
        ),
        ErrorCode(
            "insufficient_scope",
            403,
            "Insufficient scope",
            "the API key lacks the scope, acts outside its tenant, or would grant more than it has",
        ),
        ErrorCode(
            "not_found",
            404,
            "Not found",
            "no such object among the caller's own (or the API key's tenant's); "
            "the id may be no id",
        ),
        ErrorCode(
            "tenant_not_found",
            404,
            "Tenant not found",
            "the `X-Tenant` header names no enabled tenant (an empty one names none)",
        ),
        ErrorCode(
            "provider_not_configured",
            404,
            "Provider not configured",
            "the sign-in provider is not configured for this tenant",
        ),
        ErrorCode("method_not_allowed", 405, "Method not allowed", "the path has no such method"),
        ErrorCode(
            "email_taken",
            409,
            "Email taken",
            "an account with this email address exists in the tenant",
        ),
        ErrorCode("tenant_exists", 409, "Tenant exists", "a tenant with this slug exists"),
        ErrorCode(
            "mfa_already_enabled",
            409,
            "MFA already enabled",
            "MFA is on already; remove it before enrolling again",
        ),
        ErrorCode("mfa_not_enabled", 409, "MFA not enabled", "MFA is not on for this account"),
        ErrorCode(
            "identity_in_use",
            409,
            "Identity in use",
            "the provider account is linked to another user, or the caller has one there already",
        ),
        ErrorCode(
            "last_sign_in_method",
            409,
            "Last sign-in method",
            "removing it would leave the account without a password or another linked identity",
        ),
        ErrorCode(
            "payload_too_large",
            413,
            "Payload too large",
            f"the body exceeds {MAX_BODY_BYTES // 1024} KiB",
        ),
        ErrorCode(
            "unsupported_media_type",
            415,
            "Unsupported media type",
            "the body is not `application/json`",
        ),
        ErrorCode(
            "validation_error",
            422,
            "Validation failed",
            "fields are missing or invalid; `errors` names each",
        ),
        ErrorCode(
            "rate_limited",
            429,
            "Too many requests",
            "too many requests; retry after `Retry-After` seconds",
        ),
        ErrorCode("internal_error", 500, "Internal server error", "an unexpected error (a bug)"),
        ErrorCode(
            "provider_unavailable",
            503,
            "Provider unavailable",
            "the sign-in provider cannot be reached, timed out or failed; retry shortly",
        ),
        ErrorCode(
            "service_unavailable",
            503,
            "Service unavailable",
            "a dependency (the database) is unreachable; retry shortly",
        ),
    )
}
