"""Use cases of passwords: reset one with a code, log in with one."""

from __future__ import annotations

import attrs

from identity.application.accounts import AccountServices
from identity.application.events import security_event
from identity.application.first_factor import SignInResult, complete_sign_in
from identity.application.passwords import check_new_password
from identity.application.session_ending import end_sessions
from identity.application.tokens import ClientInfo
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailNotVerifiedError,
    InvalidCredentialsError,
    OtpInvalidError,
)
from identity.domain.events import EventType
from identity.domain.mfa import Amr
from identity.domain.otp import OtpPurpose
from identity.domain.tenants import Tenant


@attrs.frozen
class ResetPassword:
    tenant: Tenant
    email: Email
    code: str = attrs.field(repr=False)
    new_password: str = attrs.field(repr=False)
    client: ClientInfo = ClientInfo()


@attrs.frozen
class LogIn:
    tenant: Tenant
    email: Email
    password: str = attrs.field(repr=False)
    client: ClientInfo = ClientInfo()


class ResetPasswordWithCode:
    """Set a new password with a ``password_reset`` code; every session ends."""

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: ResetPassword) -> None:
        s = self._s
        policy = s.policy_for(command.tenant)
        check_new_password(command.new_password, s.common_passwords, field="new_password")
        await s.throttle.check(
            command.tenant.id,
            "otp-verify:password_reset",
            command.email.key,
            policy.rate_limit_otp_verify,
        )
        password_hash = await s.hasher.hash(command.new_password)
        async with s.uow() as uow:
            now = s.clock.now()
            await s.spend_code(
                uow,
                command.tenant,
                policy,
                command.email,
                OtpPurpose.PASSWORD_RESET,
                command.code,
                now,
            )
            account = await uow.accounts.get_by_email(command.tenant.id, command.email.key)
            if account is None:
                raise OtpInvalidError("no account")
            if not account.is_active:
                raise AccountDisabledError("disabled")
            was_verified = account.is_verified
            account.set_password_hash(password_hash, now)
            account.verify_email(now)
            await uow.accounts.update(account)
            tenant_id, client = command.tenant.id, command.client
            await end_sessions(uow, tenant_id, account.id, now, client, "password_reset")
            await uow.events.add(
                security_event(EventType.PASSWORD_RESET, tenant_id, now, client, user_id=account.id)
            )
            if not was_verified:
                await uow.events.add(
                    security_event(
                        EventType.USER_VERIFIED,
                        tenant_id,
                        now,
                        client,
                        user_id=account.id,
                        method="password_reset",
                    )
                )
            await uow.outbox.add(
                command.tenant.id,
                s.templates.password_changed_notice(
                    account.email.value, sender=policy.email_from, locale=account.locale
                ),
                now,
            )
            await uow.commit()


class LogInWithPassword:
    """Password login. Unknown email and wrong password fail alike, in the same time."""

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: LogIn) -> SignInResult:
        s = self._s
        policy = s.policy_for(command.tenant)
        await s.throttle.check(
            command.tenant.id, "login", command.email.key, policy.rate_limit_login
        )
        async with s.uow() as uow:
            account = await uow.accounts.get_by_email(command.tenant.id, command.email.key)
        # The hash check runs outside any transaction: no connection is held meanwhile.
        # Every failure records its event in one write of its own, so an unknown
        # email costs what a wrong password costs.
        if account is None or account.password_hash is None:
            await s.hasher.dummy_verify(command.password)
            reason = "unknown_email" if account is None else "no_password"
            await self._failed(command, account, reason)
            raise InvalidCredentialsError("invalid credentials")
        checked_hash = account.password_hash
        if not await s.hasher.verify(command.password, checked_hash):
            await self._failed(command, account, "wrong_password")
            raise InvalidCredentialsError("invalid credentials")
        try:
            account.ensure_can_log_in()
        except AccountDisabledError:
            await self._failed(command, account, "account_disabled")
            raise
        except EmailNotVerifiedError:
            await self._failed(command, account, "email_not_verified")
            raise
        new_hash = None
        if s.hasher.needs_rehash(checked_hash):
            new_hash = await s.hasher.hash(command.password)
        async with s.uow() as uow:
            # Read again: the account may have been disabled or its password
            # changed while the hash was being checked.
            current = await uow.accounts.get(command.tenant.id, account.id)
            if current is None or current.password_hash != checked_hash:
                raise InvalidCredentialsError("invalid credentials")
            current.ensure_can_log_in()
            if new_hash is not None:
                current.set_password_hash(new_hash, s.clock.now())
                await uow.accounts.update(current)
            result = await complete_sign_in(
                uow, s.tokens, current, command.tenant, policy, command.client, Amr.PASSWORD
            )
            await uow.commit()
        return result

    async def _failed(self, command: LogIn, account: Account | None, reason: str) -> None:
        async with self._s.uow() as uow:
            await uow.events.add(
                security_event(
                    EventType.LOGIN_FAILED,
                    command.tenant.id,
                    self._s.clock.now(),
                    command.client,
                    user_id=account.id if account else None,
                    method="password",
                    reason=reason,
                )
            )
            await uow.commit()
