"""What the account use cases share: their services, the one-time code rules, the
answer of a code request.

The use cases are in ``account_codes.py`` (register, request a code, carry out
the requests, verify a code) and ``account_passwords.py`` (reset the password
with a code, log in with a password).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import attrs

from identity.application.mail_templates import MailTemplates
from identity.application.otp_codes import CodeDigester, generate_code
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
from identity.application.tokens import SessionTokens
from identity.domain.code_requests import CodeRequest
from identity.domain.emails import Email
from identity.domain.errors import (
    OtpInvalidError,
)
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.tenants import Tenant


@attrs.frozen
class CodeSent:
    """The one answer of register and request-otp, whatever the account's state."""

    email: str
    expires_in_minutes: int


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
        locale: str | None = None,
    ) -> None:
        """Replace the live code and queue its mail (in ``locale``), at most once a minute."""
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
        await uow.outbox.add(tenant.id, self._code_mail(email, purpose, code, policy, locale), now)

    def _code_mail(
        self, email: Email, purpose: OtpPurpose, code: str, policy: Policy, locale: str | None
    ) -> EmailMessage:
        minutes = policy.otp_ttl_minutes
        make = {
            OtpPurpose.VERIFICATION: self.templates.verification_code,
            OtpPurpose.LOGIN: self.templates.login_code,
            OtpPurpose.PASSWORD_RESET: self.templates.password_reset_code,
            OtpPurpose.ACCOUNT_DELETION: self.templates.account_deletion_code,
        }[purpose]
        return make(email.value, code, minutes, sender=policy.email_from, locale=locale)

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
