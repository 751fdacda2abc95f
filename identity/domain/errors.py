"""Typed domain errors. The HTTP edge maps each type to a status and code."""


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidEmailError(DomainError):
    pass


class WeakPasswordError(DomainError):
    pass


class InvalidCredentialsError(DomainError):
    pass


class EmailNotVerifiedError(DomainError):
    pass


class AccountDisabledError(DomainError):
    pass


class AccountNotFoundError(DomainError):
    pass


class EmailAlreadyRegisteredError(DomainError):
    pass


class OtpInvalidError(DomainError):
    """Wrong, expired, used, exhausted or unknown code: one error for all."""


class InvalidTokenError(DomainError):
    pass


class RefreshTokenReusedError(DomainError):
    pass


class SessionNotFoundError(DomainError):
    pass


class TenantNotFoundError(DomainError):
    pass


class TenantAlreadyExistsError(DomainError):
    pass


class OAuthFailedError(DomainError):
    """The external sign-in failed; the message is safe to show a client."""


class ProviderNotConfiguredError(DomainError):
    pass


class ProviderUnavailableError(DomainError):
    """The provider cannot be reached, timed out or failed on its side (503)."""


class IdentityInUseError(DomainError):
    """The provider account is linked to another user, or this user has another one."""


class IdentityNotLinkedError(DomainError):
    """The user has no identity at that provider."""


class LastSignInMethodError(DomainError):
    """Removing this would leave the account with no way to sign in."""


class RateLimitedError(DomainError):
    def __init__(self, decision: object) -> None:
        super().__init__("rate limited")
        self.decision = decision


class StorageUnavailableError(Exception):
    """The database cannot be reached or its pool is exhausted (503)."""
