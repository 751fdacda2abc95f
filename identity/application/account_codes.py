"""Use cases of one-time codes: register, request a code, carry out the requests,
verify a code."""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs

from identity.application.accounts import AccountServices, CodeSent
from identity.application.events import security_event
from identity.application.first_factor import SignInResult, complete_sign_in
from identity.application.passwords import check_new_password
from identity.application.policy import Policy
from identity.application.ports import (
    UnitOfWork,
)
from identity.application.tokens import ClientInfo, TokenPair
from identity.domain.accounts import Account
from identity.domain.code_requests import CodeRequest, Registration
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailAlreadyRegisteredError,
    OtpInvalidError,
)
from identity.domain.events import EventType
from identity.domain.mfa import Amr
from identity.domain.otp import OtpPurpose
from identity.domain.tenants import Tenant


@attrs.frozen
class Register:
    tenant: Tenant
    email: Email
    password: str | None = attrs.field(repr=False)
    full_name: str | None = None
    client: ClientInfo = ClientInfo()
    locale: str | None = None


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
                    command.locale,
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
                locale=registration.locale,
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
            if registration.locale:
                account.locale = registration.locale
            await uow.accounts.update(account)
        if account.is_verified:
            await uow.outbox.add(
                tenant.id,
                s.templates.already_registered_notice(
                    request.email.value, sender=policy.email_from, locale=account.locale
                ),
                now,
            )
        else:
            await s.issue_code(
                uow, tenant, policy, request.email, OtpPurpose.VERIFICATION, now, account.locale
            )

    async def _request_code(
        self, uow: UnitOfWork, tenant: Tenant, policy: Policy, request: CodeRequest, now: datetime
    ) -> None:
        account = await uow.accounts.get_by_email(tenant.id, request.email.key)
        if account is not None and account.is_active and _wants(account, request.purpose):
            await self._s.issue_code(
                uow, tenant, policy, request.email, request.purpose, now, account.locale
            )


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
