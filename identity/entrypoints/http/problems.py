"""RFC 9457 problem details: the one error path for every failure."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from aiohttp import web

from identity.domain import api_keys, errors, mfa, oauth, webhooks
from identity.domain.ratelimits import RateLimitDecision

PROBLEM_CONTENT_TYPE = "application/problem+json"


@attrs.frozen
class FieldError:
    field: str
    message: str


class Problem(Exception):
    """An error answer raised anywhere in a handler."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail or title
        self.errors = errors
        self.headers = headers or {}


def validation_problem(field_errors: list[FieldError]) -> Problem:
    return Problem(
        422,
        "validation_error",
        "Validation failed",
        "The request body has invalid fields.",
        errors=field_errors,
    )


# Exception type -> (status, code, title, detail). The detail is fixed text:
# exception messages never reach a client.
DOMAIN_PROBLEMS: dict[type[Exception], tuple[int, str, str, str]] = {
    errors.InvalidCredentialsError: (
        401,
        "invalid_credentials",
        "Invalid credentials",
        "The email or password is wrong.",
    ),
    errors.EmailNotVerifiedError: (
        403,
        "email_not_verified",
        "Email not verified",
        "Verify the email address first.",
    ),
    errors.AccountDisabledError: (
        403,
        "account_disabled",
        "Account disabled",
        "This account has been disabled.",
    ),
    errors.OtpInvalidError: (
        400,
        "otp_invalid",
        "Invalid code",
        "The code is wrong, expired or already used.",
    ),
    errors.InvalidTokenError: (
        401,
        "invalid_token",
        "Invalid token",
        "The token is missing, malformed, expired or revoked.",
    ),
    errors.RefreshTokenReusedError: (
        401,
        "refresh_token_reused",
        "Refresh token reused",
        "This refresh token was already used; the session has been ended.",
    ),
    errors.SessionNotFoundError: (404, "not_found", "Not found", "No such session."),
    errors.AccountNotFoundError: (404, "not_found", "Not found", "No such user."),
    errors.EmailAlreadyRegisteredError: (
        409,
        "email_taken",
        "Email taken",
        "An account with this email address exists in this tenant.",
    ),
    errors.TenantAlreadyExistsError: (
        409,
        "tenant_exists",
        "Tenant exists",
        "A tenant with this slug exists.",
    ),
    errors.TenantNotFoundError: (
        404,
        "tenant_not_found",
        "Tenant not found",
        "The tenant does not exist or is disabled.",
    ),
    errors.OAuthFailedError: (400, "oauth_failed", "Sign-in failed", "The sign-in failed."),
    errors.ProviderNotConfiguredError: (
        404,
        "provider_not_configured",
        "Provider not configured",
        "This sign-in provider is not configured.",
    ),
    errors.ProviderUnavailableError: (
        503,
        "provider_unavailable",
        "Provider unavailable",
        "The sign-in provider cannot be reached; try again shortly.",
    ),
    errors.IdentityInUseError: (
        409,
        "identity_in_use",
        "Identity in use",
        "This provider account is linked to another user, or you have one linked there.",
    ),
    errors.LastSignInMethodError: (
        409,
        "last_sign_in_method",
        "Last sign-in method",
        "This is the account's only way to sign in; set a password or link another first.",
    ),
    errors.IdentityNotLinkedError: (
        404,
        "not_found",
        "Not found",
        "No identity of yours at this provider.",
    ),
    mfa.MfaInvalidError: (
        400,
        "mfa_invalid",
        "Invalid code",
        "The code is wrong or was already used.",
    ),
    mfa.MfaRequiredError: (
        403,
        "mfa_required",
        "Second factor required",
        "Confirm a second factor first (POST /auth/mfa/step-up).",
    ),
    mfa.MfaAlreadyEnabledError: (
        409,
        "mfa_already_enabled",
        "MFA already enabled",
        "Multi-factor authentication is already on; remove it first.",
    ),
    mfa.MfaNotEnabledError: (
        409,
        "mfa_not_enabled",
        "MFA not enabled",
        "Multi-factor authentication is not on for this account.",
    ),
    api_keys.ScopeNotGrantableError: (
        403,
        "insufficient_scope",
        "Insufficient scope",
        "A key cannot grant scopes it lacks itself; tenants:manage is only for the default "
        "tenant's keys.",
    ),
    api_keys.ApiKeyNotFoundError: (404, "not_found", "Not found", "No such API key."),
    webhooks.WebhookNotFoundError: (404, "not_found", "Not found", "No such webhook."),
    oauth.ClientNotFoundError: (404, "not_found", "Not found", "No such client."),
}

RETRY_UNAVAILABLE_SECONDS = 2


def unavailable_problem() -> Problem:
    """503 while the database (or another dependency) cannot serve: retry shortly."""
    return Problem(
        503,
        "service_unavailable",
        "Service unavailable",
        "Try again shortly.",
        headers={"Retry-After": str(RETRY_UNAVAILABLE_SECONDS)},
    )


def rate_limit_headers(decision: RateLimitDecision) -> dict[str, str]:
    """IETF draft ``RateLimit-*`` headers and their common ``X-RateLimit-*`` twins."""
    values = {
        "Limit": str(decision.limit),
        "Remaining": str(decision.remaining),
        "Reset": str(math.ceil(decision.reset_after)),
    }
    headers = {f"RateLimit-{name}": value for name, value in values.items()}
    headers.update({f"X-RateLimit-{name}": value for name, value in values.items()})
    return headers


def rate_limited_problem(decision: RateLimitDecision) -> Problem:
    headers = rate_limit_headers(decision)
    headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return Problem(
        429,
        "rate_limited",
        "Too many requests",
        "Too many requests; retry after the time in the Retry-After header.",
        headers=headers,
    )


def problem_for(error: Exception) -> Problem | None:
    """The problem for a domain error, or None for an unexpected exception."""
    if isinstance(error, errors.RateLimitedError):
        assert isinstance(error.decision, RateLimitDecision)
        return rate_limited_problem(error.decision)
    if isinstance(error, errors.WeakPasswordError):
        field = getattr(error, "field", "password")
        return validation_problem([FieldError(field, str(error))])
    if isinstance(error, errors.StorageUnavailableError):
        return unavailable_problem()
    if isinstance(error, webhooks.WebhookUrlRefusedError):
        # The messages say which rule the URL broke, never what it resolved to.
        return validation_problem([FieldError("url", str(error))])
    if isinstance(error, oauth.InvalidClientMetadataError):
        # The messages name the registration rule broken, written for clients.
        return validation_problem([FieldError(error.field, error.message)])
    if isinstance(error, errors.OAuthFailedError):
        # OAuthFailedError messages are written to be safe for clients.
        return Problem(400, "oauth_failed", "Sign-in failed", str(error) or "The sign-in failed.")
    for error_type in type(error).__mro__:
        entry = DOMAIN_PROBLEMS.get(error_type)
        if entry is not None:
            status, code, title, detail = entry
            return Problem(status, code, title, detail)
    return None


def problem_response(problem: Problem) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://identity.dev/problems/{problem.code.replace('_', '-')}",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "code": problem.code,
    }
    if problem.errors is not None:
        body["errors"] = [{"field": e.field, "message": e.message} for e in problem.errors]
    return web.Response(
        status=problem.status,
        text=json.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=problem.headers,
    )
