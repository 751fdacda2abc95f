"""The answers several handlers share, as views (attrs classes the document describes).

``UserView`` is the one user shape: ``/auth/me``, the ``user`` of a token
response, and the base of the admin API's and the export's user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal, Self
from uuid import UUID

import attrs
from aiohttp import web

from identity.application.accounts import CodeSent
from identity.application.first_factor import MfaRequired, SignInResult
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.accounts import Account
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import CLIENT_IP


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@attrs.frozen
class UserView:
    """A user account."""

    schema_name: ClassVar[str] = "User"

    id: UUID
    email: str = d.out(format="email")
    full_name: str | None = d.out()
    is_active: bool = d.out()
    is_verified: bool = d.out()
    has_password: bool = d.out()
    google_linked: bool = d.out()
    identities: list[str] = d.out("the providers the account has linked identities at")
    mfa_enabled: bool = d.out("a second factor is confirmed")
    created_at: datetime = d.out()
    tenant: str = d.out("the tenant's slug")
    locale: str | None = d.out(
        "the language the account signed up in (its mails are sent in it); null: English"
    )

    @classmethod
    def of(cls, account: Account, tenant: Tenant) -> Self:
        return cls(**cls.fields_of(account, tenant))

    @staticmethod
    def fields_of(account: Account, tenant: Tenant) -> dict[str, Any]:
        """The user's fields, for a view that extends this one."""
        return {
            "id": account.id,
            "email": account.email.value,
            "full_name": account.full_name,
            "is_active": account.is_active,
            "is_verified": account.is_verified,
            "has_password": account.has_password,
            "google_linked": account.google_linked,
            "identities": list(account.identities),
            "mfa_enabled": account.mfa_enabled,
            "created_at": account.created_at,
            "tenant": tenant.slug,
            "locale": account.locale,
        }


@attrs.frozen
class TokenResponse:
    """A token pair: the schema every token-issuing endpoint shares."""

    access_token: str = d.out("a signed JWT")
    token_type: Literal["bearer"] = d.out()
    expires_in: int = d.out("seconds the access token lives")
    refresh_token: str = d.out(
        "a JWT only this service reads (MACed, opaque to clients); spent on use"
    )
    refresh_token_expires_in: int = d.out()
    user: UserView = d.out()

    @classmethod
    def of(cls, pair: TokenPair) -> TokenResponse:
        return cls(
            pair.access_token,
            "bearer",
            pair.expires_in,
            pair.refresh_token,
            pair.refresh_token_expires_in,
            UserView.of(pair.account, pair.tenant),
        )


@attrs.frozen
class MfaRequiredView:
    """The first factor passed; MFA is on, so no tokens yet."""

    schema_name: ClassVar[str] = "MfaRequired"

    mfa_required: Literal[True] = d.out()
    mfa_token: str = d.out("for `/auth/mfa/verify`: single use, bound to this client")
    methods: list[Literal["totp", "recovery_code"]] = d.out()
    expires_in: int = d.out("seconds the mfa_token lives")

    @classmethod
    def of(cls, result: MfaRequired) -> MfaRequiredView:
        return cls(True, result.mfa_token, list(result.methods), result.expires_in)  # type: ignore[arg-type]


SIGNED_IN = (TokenResponse, MfaRequiredView)
"""A first factor's answer (both 200): tokens, or with MFA on the ``mfa_required`` answer."""


def signed_in(result: SignInResult) -> TokenResponse | MfaRequiredView:
    if isinstance(result, MfaRequired):
        return MfaRequiredView.of(result)
    return TokenResponse.of(result)


def sign_in_view(result: SignInResult) -> dict[str, Any]:
    """A first factor's answer as JSON data: tokens, or the ``mfa_required`` answer."""
    return dict(d.serialise(signed_in(result)))


@attrs.frozen
class CodeSentView:
    """The same answer whether or not the address has an account."""

    schema_name: ClassVar[str] = "CodeSent"

    message: str
    email: str = d.out("the normalised address")
    expires_in_minutes: int = d.out()

    @classmethod
    def of(cls, result: CodeSent) -> CodeSentView:
        return cls(
            "If the address can receive it, a code is on its way.",
            result.email,
            result.expires_in_minutes,
        )


@attrs.frozen
class Message:
    message: str


@attrs.frozen
class SessionsRevoked:
    message: str
    sessions_revoked: int = d.out(minimum=0)


@attrs.frozen
class SessionView:
    schema_name: ClassVar[str] = "Session"

    id: UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool = d.out("the session of the presented token")
    kind: Literal["api", "browser"] = d.out(
        "`browser`: the hosted pages' cookie session; `api`: tokens of the JSON API"
    )

    @classmethod
    def of(cls, session: Session, current_id: UUID | None) -> SessionView:
        return cls(
            session.id,
            session.created_at,
            session.last_used_at,
            session.user_agent,
            session.ip,
            session.id == current_id,
            "browser" if session.kind == "browser" else "api",
        )


@attrs.frozen
class Sessions:
    sessions: list[SessionView]


def client_info(request: web.Request) -> ClientInfo:
    user_agent = request.headers.get("User-Agent")
    return ClientInfo(
        user_agent=user_agent[:512] if user_agent else None, ip=request.get(CLIENT_IP)
    )
