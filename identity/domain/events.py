"""Security events: the facts a use case states about a change, kept for audit and webhooks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import attrs

from identity.domain.errors import DomainError


class EventType(StrEnum):
    USER_CREATED = "user.created"
    USER_VERIFIED = "user.verified"
    USER_UPDATED = "user.updated"
    USER_DISABLED = "user.disabled"
    USER_ENABLED = "user.enabled"
    USER_DELETED = "user.deleted"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_RESET = "password.reset"
    SESSION_REVOKED = "session.revoked"
    REFRESH_TOKEN_REUSED = "refresh_token.reused"
    MFA_ENABLED = "mfa.enabled"
    MFA_DISABLED = "mfa.disabled"
    MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used"
    IDENTITY_LINKED = "identity.linked"
    IDENTITY_UNLINKED = "identity.unlinked"
    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    PASSWORD_REHASHED = "password.rehashed"
    USERS_IMPORTED = "users.imported"
    PASSKEY_ADDED = "passkey.added"
    PASSKEY_REMOVED = "passkey.removed"
    PASSKEY_SIGN_COUNT_REGRESSED = "passkey.sign_count_regressed"
    ORGANIZATION_CREATED = "organization.created"
    ORGANIZATION_DELETED = "organization.deleted"
    MEMBER_ADDED = "member.added"
    MEMBER_REMOVED = "member.removed"
    MEMBER_ROLES_CHANGED = "member.roles_changed"
    INVITATION_CREATED = "invitation.created"
    INVITATION_ACCEPTED = "invitation.accepted"
    CLIENT_CREATED = "client.created"
    CLIENT_DELETED = "client.deleted"
    OAUTH_CONSENT_GRANTED = "oauth.consent_granted"
    OAUTH_CONSENT_REVOKED = "oauth.consent_revoked"


DataValue = str | int | bool | None | list[str]

# An event is read by admins and sent to webhooks: nothing that authenticates
# may ever be in it. Keys are checked by name, as a last line of defence.
_FORBIDDEN_KEY_PARTS = ("password", "secret", "token", "hash", "code", "otp", "key")
_ALLOWED_KEYS = frozenset({"key_id", "by_key_id", "has_password", "passkey_id"})


class UnsafeEventDataError(DomainError):
    """An event's data named something that looks like a secret."""


def _check_data(_event: object, _attribute: object, data: Mapping[str, DataValue]) -> None:
    for key in data:
        lowered = key.lower()
        if lowered not in _ALLOWED_KEYS and any(part in lowered for part in _FORBIDDEN_KEY_PARTS):
            raise UnsafeEventDataError(key)


@attrs.frozen
class SecurityEvent:
    """One change of security relevance, recorded in the transaction that made it."""

    id: UUID
    type: EventType
    tenant_id: UUID
    occurred_at: datetime
    user_id: UUID | None = None
    session_id: UUID | None = None
    ip: str | None = None
    user_agent: str | None = None
    data: Mapping[str, DataValue] = attrs.field(factory=dict, validator=_check_data)

    @classmethod
    def new(
        cls,
        type: EventType,
        tenant_id: UUID,
        occurred_at: datetime,
        *,
        user_id: UUID | None = None,
        session_id: UUID | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        **data: DataValue,
    ) -> SecurityEvent:
        return cls(
            id=uuid.uuid4(),
            type=type,
            tenant_id=tenant_id,
            occurred_at=occurred_at,
            user_id=user_id,
            session_id=session_id,
            ip=ip,
            user_agent=user_agent[:512] if user_agent else None,
            data=dict(data),
        )
