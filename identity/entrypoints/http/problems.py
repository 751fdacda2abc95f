"""RFC 9457 problem details: the one error path for every failure."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs
from aiohttp import web

from identity.domain import api_keys, errors, mfa, webhooks
from identity.domain.ratelimits import RateLimitDecision
from identity.entrypoints.http.error_codes import ERROR_CODES

PROBLEM_CONTENT_TYPE = "application/problem+json"


@attrs.frozen
class FieldError:
    field: str
    message: str


class Problem(Exception):
    """An error answer raised anywhere in a handler (``Problem.of(code)`` for a known code)."""

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

    @classmethod
    def of(
        cls,
        code: str,
        detail: str | None = None,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Problem:
        """The problem of ``code``, its status and title from the table (``error_codes.py``)."""
        entry = ERROR_CODES[code]
        return cls(entry.status, code, entry.title, detail, errors=errors, headers=headers)


def validation_problem(field_errors: list[FieldError]) -> Problem:
    return Problem.of(
        "validation_error", "The request body has invalid fields.", errors=field_errors
    )


# Exception type -> (code, detail); the status and title are the code's. The
# detail is fixed text: exception messages never reach a client.
DOMAIN_PROBLEMS: dict[type[Exception], tuple[str, str]] = {
    errors.InvalidCredentialsError: ("invalid_credentials", "The email or password is wrong."),
    errors.EmailNotVerifiedError: ("email_not_verified", "Verify the email address first."),
    errors.AccountDisabledError: ("account_disabled", "This account has been disabled."),
    errors.OtpInvalidError: ("otp_invalid", "The code is wrong, expired or already used."),
    errors.InvalidTokenError: (
        "invalid_token",
        "The token is missing, malformed, expired or revoked.",
    ),
    errors.RefreshTokenReusedError: (
        "refresh_token_reused",
        "This refresh token was already used; the session has been ended.",
    ),
    errors.SessionNotFoundError: ("not_found", "No such session."),
    errors.AccountNotFoundError: ("not_found", "No such user."),
    errors.EmailAlreadyRegisteredError: (
        "email_taken",
        "An account with this email address exists in this tenant.",
    ),
    errors.TenantAlreadyExistsError: ("tenant_exists", "A tenant with this slug exists."),
    errors.TenantNotFoundError: (
        "tenant_not_found",
        "The tenant does not exist or is disabled.",
    ),
    errors.OAuthFailedError: ("oauth_failed", "The sign-in failed."),
    errors.ProviderNotConfiguredError: (
        "provider_not_configured",
        "This sign-in provider is not configured.",
    ),
    errors.ProviderUnavailableError: (
        "provider_unavailable",
        "The sign-in provider cannot be reached; try again shortly.",
    ),
    errors.IdentityInUseError: (
        "identity_in_use",
        "This provider account is linked to another user, or you have one linked there.",
    ),
    errors.LastSignInMethodError: (
        "last_sign_in_method",
        "This is the account's only way to sign in; set a password or link another first.",
    ),
    errors.IdentityNotLinkedError: ("not_found", "No identity of yours at this provider."),
    mfa.MfaInvalidError: ("mfa_invalid", "The code is wrong or was already used."),
    mfa.MfaRequiredError: (
        "mfa_required",
        "Confirm a second factor first (POST /auth/mfa/step-up).",
    ),
    mfa.MfaAlreadyEnabledError: (
        "mfa_already_enabled",
        "Multi-factor authentication is already on; remove it first.",
    ),
    mfa.MfaNotEnabledError: (
        "mfa_not_enabled",
        "Multi-factor authentication is not on for this account.",
    ),
    api_keys.ScopeNotGrantableError: (
        "insufficient_scope",
        "A key cannot grant scopes it lacks itself; tenants:manage is only for the default "
        "tenant's keys.",
    ),
    api_keys.ApiKeyNotFoundError: ("not_found", "No such API key."),
    webhooks.WebhookNotFoundError: ("not_found", "No such webhook."),
}

RETRY_UNAVAILABLE_SECONDS = 2


def unavailable_problem() -> Problem:
    """503 while the database (or another dependency) cannot serve: retry shortly."""
    return Problem.of(
        "service_unavailable",
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
    return Problem.of(
        "rate_limited",
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
    if isinstance(error, errors.OAuthFailedError):
        # OAuthFailedError messages are written to be safe for clients.
        return Problem.of("oauth_failed", str(error) or "The sign-in failed.")
    for error_type in type(error).__mro__:
        entry = DOMAIN_PROBLEMS.get(error_type)
        if entry is not None:
            return Problem.of(*entry)
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
