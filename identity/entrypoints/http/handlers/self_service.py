"""The signed-in user's own account: erase it, export it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Self
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.application import self_service
from identity.application.sessions import Principal
from identity.domain.accounts import Account
from identity.domain.tenants import Tenant
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.handlers.events import EventView
from identity.entrypoints.http.views import UserView, client_info

endpoints = d.Endpoints(tag="sessions")


@attrs.frozen
class DeleteAccountBody:
    one_of: ClassVar[tuple[str, ...]] = ("password", "otp_code")

    password: Annotated[str, d.Password("the account's password")] | None = None
    otp_code: (
        Annotated[
            str,
            d.Digits("for an account without a password: a code of purpose `account_deletion`"),
        ]
        | None
    ) = None


@attrs.frozen
class ProfileView(UserView):
    """The account itself: the `/auth/me` user and its dates."""

    updated_at: datetime = d.out()
    verified_at: datetime | None = d.out()
    last_login_at: datetime | None = d.out()

    @classmethod
    def of(cls, account: Account, tenant: Tenant) -> Self:
        return cls(
            **cls.fields_of(account, tenant),
            updated_at=account.updated_at,
            verified_at=account.verified_at,
            last_login_at=account.last_login_at,
        )


@attrs.frozen
class ExportedSession:
    """An active session (no token: only when and from where)."""

    id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    user_agent: str | None
    ip: str | None
    current: bool


@attrs.frozen
class ExportedIdentity:
    """A link to an external provider."""

    provider: str
    email: str | None = d.out("the address the provider gave when the link was made")
    linked_at: datetime = d.out()


@attrs.frozen
class ExportedFactor:
    """A second factor (never its secret)."""

    type: str = d.out("`totp`")
    created_at: datetime = d.out()
    confirmed_at: datetime | None = d.out("null while enrolment is pending")


@attrs.frozen
class AccountExportView:
    """Everything held about the caller, one section per kind; no secret material."""

    exported_at: datetime
    profile: ProfileView
    sessions: list[ExportedSession]
    identities: list[ExportedIdentity]
    factors: list[ExportedFactor]
    recovery_codes_unused: int = d.out("how many recovery codes are left (never the codes)")
    events: list[EventView] = d.out("the security events about the caller, newest first")


@endpoints.delete(
    "/auth/me",
    summary="Delete the caller's account and everything tied to it",
    description="Re-authenticate with the password, or, for an account without one, with a "
    "code of purpose `account_deletion` (`POST /auth/request-otp`). The email can register "
    "again; every token of the account stops working at once.",
    body=DeleteAccountBody,
    auth=d.BEARER,
    errors=("invalid_credentials", "otp_invalid", "mfa_required"),
)
@inject
async def delete_me(
    request: web.Request,
    body: DeleteAccountBody,
    use_case: self_service.DeleteOwnAccount = Provide[Container.delete_own_account],
) -> None:
    command = self_service.DeleteAccountCommand(
        d.user(request), body.password, body.otp_code, client_info(request)
    )
    await use_case(command)


@endpoints.get(
    "/auth/me/export",
    summary="Export everything held about the caller",
    ok=AccountExportView,
    auth=d.BEARER,
)
@inject
async def export_me(
    request: web.Request,
    use_case: self_service.ExportOwnAccount = Provide[Container.export_own_account],
) -> AccountExportView:
    principal = d.user(request)
    return export_view(principal, await use_case(principal))


def export_view(principal: Principal, found: self_service.AccountExport) -> AccountExportView:
    """The export's shape, shared with the account page's "Download my data"."""
    account = found.account
    return AccountExportView(
        exported_at=found.exported_at,
        profile=ProfileView.of(account, principal.tenant),
        sessions=[
            ExportedSession(
                id=session.id,
                created_at=session.created_at,
                last_used_at=session.last_used_at,
                expires_at=session.expires_at,
                user_agent=session.user_agent,
                ip=session.ip,
                current=session.id == principal.session_id,
            )
            for session in found.sessions
        ],
        identities=[
            ExportedIdentity(link.provider, link.email_at_link, link.created_at)
            for link in found.identities
        ],
        factors=[
            ExportedFactor("totp", totp.created_at, totp.confirmed_at)
            for totp in ([found.totp] if found.totp else [])
        ],
        recovery_codes_unused=found.recovery_codes_unused,
        events=[EventView.of(event, principal.tenant.slug) for event in found.events],
    )
