"""Use cases of the account lifecycle: register, codes, login, passwords."""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs

from identity.application.events import security_event
from identity.application.first_factor import SignInResult, complete_sign_in
from identity.application.mail_templates import MailTemplates
from identity.application.otp_codes import CodeDigester, generate_code
from identity.application.passwords import check_new_password
from identity.application.policy import Policy, policy_for
from identity.application.ports import (
    Clock,
    CommonPasswords,
    PasswordHasher,
    UnitOfWork,
    UnitOfWorkFactory,
    WorkSignal,
)
from identity.application.throttle import Throttle
from identity.application.tokens import ClientInfo, SessionTokens, TokenPair
from identity.domain.accounts import Account
from identity.domain.code_requests import CodeRequest, Registration
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailAlreadyRegisteredError,
    EmailNotVerifiedError,
    InvalidCredentialsError,
    OtpInvalidError,
)
from identity.domain.events import EventType
from identity.domain.mail import EmailMessage
from identity.domain.mfa import Amr
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.tenants import Tenant


@attrs.frozen
class CodeSent:
    """The one answer of register and request-otp, whatever the account's state."""

    email: str
    expires_in_minutes: int


@attrs.frozen
class Register:
    tenant: Tenant
    email: Email
    password: str | None = attrs.field(repr=False)
    full_name: str | None = None
    client: ClientInfo = ClientInfo()


@attrs.frozen
class RequestCode:
    tenant: Tenant
    email: Email
    purpose: OtpPurpose


@attrs.frozen
class VerifyCode:
    tenant: Tenant
    email: Email
    code: str = attrs.field(repr=False)
    purpose: OtpPurpose
    client: ClientInfo = ClientInfo()


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


@attrs.frozen
class AccountServices:
    """What the account use cases share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PasswordHasher
    common_passwords: CommonPasswords
    digester: CodeDigester
    templates: MailTemplates
    tokens: SessionTokens
    throttle: Throttle
    policy: Policy
    # Wakes the worker that carries out code requests; without one it polls.
    code_requests_signal: WorkSignal | None = None

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)

    async def enqueue(self, request: CodeRequest) -> None:
        """Store a code request: the same write, whatever the email, then wake the worker."""
        async with self.uow() as uow:
            await uow.code_requests.add(request)
            await uow.commit()
        if self.code_requests_signal is not None:
            self.code_requests_signal.notify()

    async def issue_code(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        policy: Policy,
        email: Email,
        purpose: OtpPurpose,
        now: datetime,
    ) -> None:
        """Replace the live code and queue its mail, at most once a minute."""
        current = await uow.challenges.get(tenant.id, email.key, purpose)
        if current is not None and current.is_usable(now) and not current.may_be_replaced(now):
            return
        code = generate_code()
        await uow.challenges.replace(
            OtpChallenge(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email_key=email.key,
                purpose=purpose,
                code_digest=self.digester.digest(tenant.id, email.key, purpose, code),
                created_at=now,
                expires_at=now + policy.otp_ttl,
                max_attempts=policy.otp_max_attempts,
            )
        )
        await uow.outbox.add(tenant.id, self._code_mail(email, purpose, code, policy), now)

    def _code_mail(
        self, email: Email, purpose: OtpPurpose, code: str, policy: Policy
    ) -> EmailMessage:
        minutes = policy.otp_ttl_minutes
        make = {
            OtpPurpose.VERIFICATION: self.templates.verification_code,
            OtpPurpose.LOGIN: self.templates.login_code,
            OtpPurpose.PASSWORD_RESET: self.templates.password_reset_code,
            OtpPurpose.ACCOUNT_DELETION: self.templates.account_deletion_code,
        }[purpose]
        return make(email.value, code, minutes, sender=policy.email_from)

    async def spend_code(
        self,
        uow: UnitOfWork,
        tenant: Tenant,
        policy: Policy,
        email: Email,
        purpose: OtpPurpose,
        code: str,
        now: datetime,
    ) -> None:
        """Check and spend a code; a failed try is committed before the error is raised.

        Every failure (no code, a dead code, a wrong code) makes the same one write,
        so the answer's timing does not tell whether the email has an account.
        """
        challenge = await uow.challenges.get(tenant.id, email.key, purpose)
        digest = self.digester.digest(tenant.id, email.key, purpose, code)
        attempts_before = challenge.attempts if challenge is not None else 0
        try:
            if challenge is None:
                raise OtpInvalidError("no code")
            challenge.check(digest, now)
        except OtpInvalidError:
            await uow.challenges.record_failure(
                OtpChallenge.placeholder(tenant.id, email.key, purpose, now, policy.otp_ttl)
            )
            await uow.commit()
            raise
        if not await uow.challenges.record_check(challenge, attempts_before):
            raise OtpInvalidError("spent concurrently")


class RegisterUser:
    """Accept a registration, answering the same for every email, in the same time.

    Only a code request is stored here; ``IssueRequestedCodes`` then creates the
    unverified account and mails a code, or mails a verified owner a notice.
    Registering again an unverified email replaces its password: the inbox
    owner decides by using the code.
    """

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: Register) -> CodeSent:
        s = self._s
        policy = s.policy_for(command.tenant)
        if command.password is not None:
            check_new_password(command.password, s.common_passwords, field="password")
        await s.throttle.check(
            command.tenant.id,
            "otp-request:verification",
            command.email.key,
            policy.rate_limit_otp_request,
        )
        # Hashed before anything is looked up, so every email costs the same.
        password_hash = await s.hasher.hash(command.password) if command.password else None
        await s.enqueue(
            CodeRequest(
                id=uuid.uuid4(),
                tenant_id=command.tenant.id,
                email=command.email,
                purpose=OtpPurpose.VERIFICATION,
                requested_at=s.clock.now(),
                registration=Registration(
                    password_hash,
                    command.full_name,
                    command.client.ip,
                    command.client.user_agent,
                ),
            )
        )
        return CodeSent(command.email.value, policy.otp_ttl_minutes)


class RequestOtp:
    """Accept a code request; the same answer, in the same time, whether or not the
    account exists. ``IssueRequestedCodes`` mails the code when there is one to send."""

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: RequestCode) -> CodeSent:
        s = self._s
        policy = s.policy_for(command.tenant)
        await s.throttle.check(
            command.tenant.id,
            f"otp-request:{command.purpose.value}",
            command.email.key,
            policy.rate_limit_otp_request,
        )
        await s.enqueue(
            CodeRequest(
                id=uuid.uuid4(),
                tenant_id=command.tenant.id,
                email=command.email,
                purpose=command.purpose,
                requested_at=s.clock.now(),
            )
        )
        return CodeSent(command.email.value, policy.otp_ttl_minutes)


class IssueRequestedCodes:
    """Carry out pending code requests (the background worker's job).

    Per request, in one transaction: take it off the queue, then for a
    registration create or update the unverified account and issue a code (or
    mail a verified owner a notice); for a code request issue a code when the
    account exists, is active and wants one. At most one new code per email
    and purpose a minute. A request older than the code lifetime is dropped
    (its code would be dead on arrival). Returns how many were handled.
    """

    def __init__(self, services: AccountServices, *, batch_size: int = 50) -> None:
        self._s = services
        self._batch_size = batch_size

    async def __call__(self) -> int:
        handled = 0
        while handled < self._batch_size and await self._one():
            handled += 1
        return handled

    async def _one(self) -> bool:
        s = self._s
        async with s.uow() as uow:
            request = await uow.code_requests.take_next()
            if request is None:
                return False
            tenant = await uow.tenants.get(request.tenant_id)
            now = s.clock.now()
            if tenant is not None and not tenant.disabled:
                policy = s.policy_for(tenant)
                if now - request.requested_at <= policy.otp_ttl:
                    if request.registration is not None:
                        await self._register(uow, tenant, policy, request, now)
                    else:
                        await self._request_code(uow, tenant, policy, request, now)
            await uow.commit()
        return True

    async def _register(
        self, uow: UnitOfWork, tenant: Tenant, policy: Policy, request: CodeRequest, now: datetime
    ) -> None:
        s = self._s
        registration = request.registration
        assert registration is not None
        account = await uow.accounts.get_by_email(tenant.id, request.email.key)
        if account is None:
            account = Account(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email=request.email,
                password_hash=registration.password_hash,
                full_name=registration.full_name,
                created_at=now,
                updated_at=now,
            )
            try:
                await uow.accounts.add(account)
            except EmailAlreadyRegisteredError:
                account = await uow.accounts.get_by_email(tenant.id, request.email.key)
                assert account is not None
            else:
                await uow.events.add(
                    security_event(
                        EventType.USER_CREATED,
                        tenant.id,
                        now,
                        ClientInfo(registration.user_agent, registration.client_ip),
                        user_id=account.id,
                        has_password=registration.password_hash is not None,
                    )
                )
        elif not account.is_verified:
            if registration.password_hash is not None:
                account.set_password_hash(registration.password_hash, now)
            if registration.full_name:
                account.full_name = registration.full_name
            await uow.accounts.update(account)
        if account.is_verified:
            await uow.outbox.add(
                tenant.id,
                s.templates.already_registered_notice(
                    request.email.value, sender=policy.email_from
                ),
                now,
            )
        else:
            await s.issue_code(uow, tenant, policy, request.email, OtpPurpose.VERIFICATION, now)

    async def _request_code(
        self, uow: UnitOfWork, tenant: Tenant, policy: Policy, request: CodeRequest, now: datetime
    ) -> None:
        account = await uow.accounts.get_by_email(tenant.id, request.email.key)
        if account is not None and account.is_active and _wants(account, request.purpose):
            await self._s.issue_code(uow, tenant, policy, request.email, request.purpose, now)


def _wants(account: Account, purpose: OtpPurpose) -> bool:
    return not (purpose is OtpPurpose.VERIFICATION and account.is_verified)


class VerifyOtp:
    """Spend a verification or login code: the inbox is proven, a session starts."""

    def __init__(self, services: AccountServices) -> None:
        self._s = services

    async def __call__(self, command: VerifyCode) -> SignInResult:
        s = self._s
        policy = s.policy_for(command.tenant)
        await s.throttle.check(
            command.tenant.id,
            f"otp-verify:{command.purpose.value}",
            command.email.key,
            policy.rate_limit_otp_verify,
        )
        async with s.uow() as uow:
            now = s.clock.now()
            account = await uow.accounts.get_by_email(command.tenant.id, command.email.key)
            # A failed check makes the same writes for every email (one counted try,
            # one event), so neither the answer nor its timing tells whether the
            # account exists.
            try:
                await s.spend_code(
                    uow, command.tenant, policy, command.email, command.purpose, command.code, now
                )
            except OtpInvalidError:
                if command.purpose is OtpPurpose.LOGIN:
                    await uow.events.add(
                        security_event(
                            EventType.LOGIN_FAILED,
                            command.tenant.id,
                            now,
                            command.client,
                            user_id=account.id if account else None,
                            method="otp",
                            reason="otp_invalid",
                        )
                    )
                    await uow.commit()
                raise
            if account is None:
                raise OtpInvalidError("no account")
            # Only a right code learns that the account is disabled (and it stays unspent).
            if not account.is_active:
                raise AccountDisabledError("disabled")
            was_verified = account.is_verified
            account.verify_email(now)
            await uow.accounts.update(account)
            result = await complete_sign_in(
                uow, s.tokens, account, command.tenant, policy, command.client, Amr.EMAILED_CODE
            )
            if not was_verified:
                await uow.events.add(
                    security_event(
                        EventType.USER_VERIFIED,
                        command.tenant.id,
                        now,
                        command.client,
                        user_id=account.id,
                        session_id=result.session_id if isinstance(result, TokenPair) else None,
                        method="otp",
                    )
                )
            await uow.commit()
        return result


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
            ended = await uow.sessions.revoke_all_for_account(
                command.tenant.id, account.id, now, "password_reset"
            )
            tenant_id, client = command.tenant.id, command.client
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
            if ended:
                await uow.events.add(
                    security_event(
                        EventType.SESSION_REVOKED,
                        tenant_id,
                        now,
                        client,
                        user_id=account.id,
                        reason="password_reset",
                        sessions_revoked=ended,
                    )
                )
            await uow.outbox.add(
                command.tenant.id,
                s.templates.password_changed_notice(account.email.value, sender=policy.email_from),
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
