"""A signed-in user's own account: erase it, or take a copy of everything held about it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.application.accounts import AccountServices
from identity.application.admin import erase_account
from identity.application.assurance import require_aal2
from identity.application.ports import MembershipOf, UnitOfWork
from identity.application.sessions import Principal
from identity.application.tokens import ClientInfo
from identity.domain.accounts import Account
from identity.domain.errors import InvalidCredentialsError, InvalidTokenError
from identity.domain.events import SecurityEvent
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.mfa import TotpFactor
from identity.domain.otp import OtpPurpose
from identity.domain.passkeys import Passkey
from identity.domain.sessions import Session

# The newest events of the account (they are kept IDENTITY_EVENT_RETENTION anyway).
EXPORTED_EVENTS = 1000


@attrs.frozen
class DeleteAccount:
    """Re-authentication: the password, or a code of purpose ``account_deletion``."""

    principal: Principal
    password: str | None = attrs.field(default=None, repr=False)
    code: str | None = attrs.field(default=None, repr=False)
    client: ClientInfo = ClientInfo()


class DeleteOwnAccount:
    """Erase the caller's account as the admin delete does, after re-authentication.

    With MFA on, the caller's session must be aal2 (``MfaRequiredError``).

    A wrong password is ``InvalidCredentialsError`` (counted against the login
    limit); a wrong code ``OtpInvalidError`` (counted against the code limit,
    and against the code's own attempts).
    """

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: DeleteAccount) -> None:
        s = self._s
        account = command.principal.account
        tenant = command.principal.tenant
        policy = s.policy_for(tenant)
        session_id = command.principal.session_id
        if account.mfa_enabled:
            # Before the slow checks: an aal1 session is refused without spending anything.
            async with s.uow() as uow:
                await require_aal2(uow, account, session_id)
        if command.password is not None:
            await s.throttle.check(tenant.id, "login", account.email.key, policy.rate_limit_login)
            await self._check_password(account, command.password)
            async with s.uow() as uow:
                current = await self._current(uow, account, session_id)
                # The hash was checked outside the transaction: it must still be the one.
                if current.password_hash != account.password_hash:
                    raise InvalidCredentialsError("password changed meanwhile")
                await erase_account(uow, current, command.client, s.clock.now(), by="self")
                await uow.commit()
            return
        assert command.code is not None, "the edge asks for a password or a code"
        purpose = OtpPurpose.ACCOUNT_DELETION
        await s.throttle.check(
            tenant.id,
            f"otp-verify:{purpose.value}",
            account.email.key,
            policy.rate_limit_otp_verify,
        )
        async with s.uow() as uow:
            await s.spend_code(
                uow, tenant, policy, account.email, purpose, command.code, s.clock.now()
            )
            current = await self._current(uow, account, session_id)
            await erase_account(uow, current, command.client, s.clock.now(), by="self")
            await uow.commit()

    async def _check_password(self, account: Account, password: str) -> None:
        if account.password_hash is None:
            await self._s.hasher.dummy_verify(password)
            raise InvalidCredentialsError("no password set")
        if not await self._s.hasher.verify(password, account.password_hash):
            raise InvalidCredentialsError("wrong password")

    @staticmethod
    async def _current(uow: UnitOfWork, account: Account, session_id: UUID) -> Account:
        current = await uow.accounts.get(account.tenant_id, account.id)
        if current is None or not current.is_active:
            raise InvalidTokenError("account gone or disabled")
        await require_aal2(uow, current, session_id)  # MFA may have been turned on meanwhile
        return current


@attrs.frozen
class AccountExport:
    """Everything held about one account; secrets (hashes, tokens, codes) are not in it."""

    exported_at: datetime
    account: Account
    sessions: list[Session]
    identities: list[LinkedIdentity]
    totp: TotpFactor | None
    recovery_codes_unused: int
    events: list[SecurityEvent]
    passkeys: list[Passkey] = attrs.field(factory=list)
    organizations: list[MembershipOf] = attrs.field(factory=list)


class ExportOwnAccount:
    """A copy of the caller's data: profile, active sessions, linked identities, factors,
    passkeys and the newest ``EXPORTED_EVENTS`` security events about it."""

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> AccountExport:
        tenant_id = principal.tenant.id
        account_id = principal.account.id
        now = self._s.clock.now()
        async with self._s.uow() as uow:
            account = await uow.accounts.get(tenant_id, account_id)
            if account is None:
                raise InvalidTokenError("account gone")
            sessions = await uow.sessions.list_active_for_account(tenant_id, account_id, now)
            identities = await uow.external_identities.list_for_account(tenant_id, account_id)
            totp = await uow.totp_factors.get(tenant_id, account_id)
            unused = await uow.recovery_codes.count_unused(tenant_id, account_id)
            events = await uow.events.list(tenant_id, limit=EXPORTED_EVENTS, user_id=account_id)
            passkeys = await uow.passkeys.list_for_account(tenant_id, account_id)
            organizations = await uow.memberships.list_for_user(tenant_id, account_id)
        return AccountExport(
            now, account, sessions, identities, totp, unused, events, passkeys, organizations
        )
