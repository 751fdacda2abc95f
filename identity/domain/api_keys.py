"""API keys: service credentials that carry scopes and belong to one tenant."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

import attrs

from identity.domain.errors import DomainError

KEY_PREFIX = "idk"


class Scope(StrEnum):
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    SESSIONS_WRITE = "sessions:write"
    EVENTS_READ = "events:read"
    WEBHOOKS_MANAGE = "webhooks:manage"
    TOKENS_INTROSPECT = "tokens:introspect"
    API_KEYS_MANAGE = "api-keys:manage"
    ORGANIZATIONS_MANAGE = "organizations:manage"
    CLIENTS_MANAGE = "clients:manage"
    # The deployment's operator: only on keys of the default tenant.
    TENANTS_MANAGE = "tenants:manage"
    # Export with secrets: password hashes, TOTP secrets, linked provider subjects.
    USERS_EXPORT = "users:export"


class InvalidApiKeyError(DomainError):
    """Missing, malformed, unknown or revoked key: one error for all."""


class InsufficientScopeError(DomainError):
    """The key lacks the scope, or acts outside its tenant."""


class ScopeNotGrantableError(DomainError):
    """A new key asked for a scope its creator may not grant; the message names it."""


class ApiKeyNotFoundError(DomainError):
    pass


@attrs.define
class ApiKey:
    id: UUID
    tenant_id: UUID
    name: str
    scopes: frozenset[Scope]
    secret_digest: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def revoke(self, now: datetime) -> bool:
        """End the key; False when it already was."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = now
        return True


def check_grantable(
    requested: frozenset[Scope], *, in_default_tenant: bool, granter: frozenset[Scope] | None
) -> None:
    """Refuse scopes a key may not carry, or its creator may not hand out.

    ``granter`` is None for the operator at the command line, who may grant any.
    """
    if not requested:
        raise ScopeNotGrantableError("a key needs at least one scope")
    if Scope.TENANTS_MANAGE in requested and not in_default_tenant:
        raise ScopeNotGrantableError("tenants:manage is only for keys of the default tenant")
    if granter is not None:
        missing = sorted(requested - granter)
        if missing:
            names = ", ".join(missing)
            raise ScopeNotGrantableError(f"a key cannot grant scopes it lacks: {names}")
