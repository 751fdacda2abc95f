"""Use cases of multi-factor authentication: TOTP enrolment, the second step of a
sign-in, step-up, recovery codes, removal (by the user or an administrator)."""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

import attrs

from identity.application.assurance import require_aal2
from identity.application.events import security_event
from identity.application.first_factor import login_method, mfa_token_key
from identity.application.policy import Policy, policy_for
from identity.application.ports import Clock, TotpEngine, UnitOfWork, UnitOfWorkFactory
from identity.application.recovery_codes import (
    RecoveryCodeDigester,
    new_recovery_code,
    normalise_recovery_code,
)
from identity.application.session_ending import end_sessions
from identity.application.sessions import Principal
from identity.application.throttle import Throttle
from identity.application.tokens import NO_CLIENT, ClientInfo, SessionTokens, TokenPair
from identity.domain.accounts import Account
from identity.domain.errors import AccountDisabledError, AccountNotFoundError, InvalidTokenError
from identity.domain.events import EventType
from identity.domain.mfa import (
    AAL2,
    RECOVERY_CODE_COUNT,
    Amr,
    MfaAlreadyEnabledError,
    MfaInvalidError,
    MfaNotEnabledError,
    RecoveryCode,
    TotpFactor,
)
from identity.domain.tenants import Tenant


@attrs.frozen
class SecondFactorProof:
    """Exactly one of a TOTP code or a recovery code (the edge checks their form)."""

    code: str | None = attrs.field(default=None, repr=False)
    recovery_code: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if (self.code is None) == (self.recovery_code is None):
            raise ValueError("give exactly one of code and recovery_code")


@attrs.frozen
class TotpEnrollment:
    factor_id: UUID
    secret: str = attrs.field(repr=False)
    otpauth_uri: str = attrs.field(repr=False)


@attrs.frozen
class RecoveryCodes:
    codes: tuple[str, ...] = attrs.field(repr=False)


@attrs.frozen
class VerifySecondFactor:
    tenant: Tenant
    mfa_token: str = attrs.field(repr=False)
    proof: SecondFactorProof
    client: ClientInfo = ClientInfo()


@attrs.frozen
class MfaServices:
    """What the MFA use cases share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    totp: TotpEngine
    digester: RecoveryCodeDigester
    tokens: SessionTokens
    throttle: Throttle
    policy: Policy

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)

    async def throttle_account(self, tenant: Tenant, user_id: UUID) -> None:
        """Second-factor checks count against the login limit, per account."""
        await self.throttle.check(
            tenant.id, "mfa", str(user_id), self.policy_for(tenant).rate_limit_login
        )

    async def check_second_factor(
        self, uow: UnitOfWork, tenant: Tenant, user_id: UUID, proof: SecondFactorProof
    ) -> Amr:
        """Spend a TOTP step or a recovery code of the account; ``MfaInvalidError`` otherwise.

        Nothing is written when it fails. Atomic: of concurrent submissions of
        one code, exactly one passes.
        """
        now = self.clock.now()
        if proof.code is not None:
            factor = await uow.totp_factors.get(tenant.id, user_id)
            if factor is None or not factor.is_confirmed:
                raise MfaInvalidError("no confirmed factor")
            await self.use_totp(uow, factor, proof.code, now)
            return Amr.TOTP
        assert proof.recovery_code is not None
        normalised = normalise_recovery_code(proof.recovery_code)
        if normalised is None:
            raise MfaInvalidError("not a recovery code")
        digest = self.digester.digest(tenant.id, user_id, normalised)
        if not await uow.recovery_codes.use(tenant.id, user_id, digest, now):
            raise MfaInvalidError("unknown or used recovery code")
        return Amr.RECOVERY_CODE

    async def use_totp(
        self,
        uow: UnitOfWork,
        factor: TotpFactor,
        code: str,
        now: datetime,
        *,
        confirm: bool = False,
    ) -> None:
        """Accept ``code`` for ``factor`` once (``confirm``: and confirm the factor)."""
        step = self.totp.matching_step(factor.secret, code, now)
        if step is None or not factor.accepts_step(step):
            raise MfaInvalidError("wrong or replayed code")
        previous = factor.last_used_step
        if confirm:
            factor.confirm(step, now)
        else:
            factor.use_step(step)
        if not await uow.totp_factors.record_use(factor, previous):
            raise MfaInvalidError("the code was used concurrently")

    async def new_recovery_codes(
        self, uow: UnitOfWork, account: Account, now: datetime
    ) -> RecoveryCodes:
        codes = tuple(new_recovery_code() for _ in range(RECOVERY_CODE_COUNT))
        await uow.recovery_codes.replace_all(
            account.tenant_id,
            account.id,
            [
                RecoveryCode(
                    id=uuid.uuid4(),
                    tenant_id=account.tenant_id,
                    user_id=account.id,
                    code_digest=self.digester.digest(
                        account.tenant_id, account.id, code.replace("-", "")
                    ),
                    created_at=now,
                )
                for code in codes
            ],
        )
        return RecoveryCodes(codes)


async def _current_account(uow: UnitOfWork, principal: Principal, *, mfa: bool) -> Account:
    """The caller's account as this transaction sees it, with MFA on (``mfa=True``)
    or off; ``MfaNotEnabledError`` / ``MfaAlreadyEnabledError`` otherwise."""
    account = await uow.accounts.get(principal.tenant.id, principal.account.id)
    if account is None or not account.is_active:
        raise InvalidTokenError("account gone or disabled")
    if mfa and not account.mfa_enabled:
        raise MfaNotEnabledError("MFA is off")
    if not mfa and account.mfa_enabled:
        raise MfaAlreadyEnabledError("MFA is already on")
    return account


class EnrollTotp:
    """Start TOTP enrolment: a new secret, pending until confirmed with a code.

    A new enrolment replaces a pending one. Raises ``MfaAlreadyEnabledError``
    while a confirmed factor exists.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> TotpEnrollment:
        s = self._s
        secret = s.totp.new_secret()
        async with s.uow() as uow:
            account = await _current_account(uow, principal, mfa=False)
            factor = TotpFactor(
                id=uuid.uuid4(),
                tenant_id=account.tenant_id,
                user_id=account.id,
                secret=secret,
                created_at=s.clock.now(),
            )
            await uow.totp_factors.replace_pending(factor)
            await uow.commit()
        uri = s.totp.provisioning_uri(
            secret, account_name=account.email.value, issuer=principal.tenant.name
        )
        return TotpEnrollment(factor.id, secret, uri)


class ConfirmTotp:
    """Confirm the pending factor with a code: MFA is on, ten recovery codes are made,
    and the caller's session becomes aal2. The user's other sessions stay aal1.

    Raises ``MfaInvalidError`` for a wrong code or no pending enrolment, and
    ``MfaAlreadyEnabledError`` when MFA is on already.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(
        self, principal: Principal, code: str, client: ClientInfo = NO_CLIENT
    ) -> RecoveryCodes:
        s = self._s
        await s.throttle_account(principal.tenant, principal.account.id)
        async with s.uow() as uow:
            account = await _current_account(uow, principal, mfa=False)
            factor = await uow.totp_factors.get(account.tenant_id, account.id)
            if factor is None or factor.is_confirmed:
                raise MfaInvalidError("no pending enrolment")
            now = s.clock.now()
            await s.use_totp(uow, factor, code, now, confirm=True)
            account.mfa_enabled = True
            account.updated_at = now
            await uow.accounts.update(account)
            codes = await s.new_recovery_codes(uow, account, now)
            session = await uow.sessions.get(account.tenant_id, principal.session_id)
            if session is None or not session.is_active(now):
                raise InvalidTokenError("session ended")
            session.step_up(Amr.TOTP.value)
            await uow.sessions.set_assurance(session)
            await uow.events.add(
                security_event(
                    EventType.MFA_ENABLED,
                    account.tenant_id,
                    now,
                    client,
                    user_id=account.id,
                    session_id=session.id,
                    factor="totp",
                )
            )
            await uow.commit()
        return codes


class VerifyMfa:
    """The second step of a sign-in: ``mfa_token`` plus a TOTP or recovery code -> aal2 tokens.

    The token is single use, lives five minutes, belongs to the client that
    got it, and dies after five wrong codes. A wrong code is ``MfaInvalidError``
    (counted and committed first); an unusable token ``InvalidTokenError``.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(self, command: VerifySecondFactor) -> TokenPair:
        s = self._s
        tenant = command.tenant
        key = mfa_token_key(command.mfa_token)
        async with s.uow() as uow:
            challenge = await uow.mfa_challenges.get(tenant.id, key)
        if challenge is None:
            raise InvalidTokenError("unknown mfa token")
        challenge.ensure_usable(s.clock.now(), command.client.user_agent)
        await s.throttle_account(tenant, challenge.user_id)
        async with s.uow() as uow:
            challenge = await uow.mfa_challenges.get(tenant.id, key)
            if challenge is None:
                raise InvalidTokenError("mfa token gone")
            now = s.clock.now()
            challenge.ensure_usable(now, command.client.user_agent)
            attempts_before = challenge.attempts
            try:
                method = await s.check_second_factor(uow, tenant, challenge.user_id, command.proof)
            except MfaInvalidError:
                await uow.rollback()
                challenge.fail()
                await uow.mfa_challenges.record_check(challenge, attempts_before)
                await uow.commit()
                raise
            challenge.spend(now)
            if not await uow.mfa_challenges.record_check(challenge, attempts_before):
                raise InvalidTokenError("mfa token spent concurrently")
            account = await uow.accounts.get(tenant.id, challenge.user_id)
            if account is None:
                raise InvalidTokenError("account gone")
            if not account.is_active:
                raise AccountDisabledError("the account is disabled")
            pair = await s.tokens.start(
                uow,
                account,
                tenant,
                s.policy_for(tenant),
                command.client,
                amr=(challenge.first_factor.value, method.value),
                aal=AAL2,
            )
            if method is Amr.RECOVERY_CODE:
                await uow.events.add(
                    security_event(
                        EventType.MFA_RECOVERY_CODE_USED,
                        tenant.id,
                        now,
                        command.client,
                        user_id=account.id,
                        session_id=pair.session_id,
                    )
                )
            await uow.events.add(
                security_event(
                    EventType.LOGIN_SUCCEEDED,
                    tenant.id,
                    now,
                    command.client,
                    user_id=account.id,
                    session_id=pair.session_id,
                    method=login_method(challenge.first_factor),
                    aal="aal2",
                    second_factor=method.value,
                )
            )
            await uow.commit()
        return pair


class StepUp:
    """Raise the caller's session to aal2 with a TOTP or recovery code.

    Answers a token pair for the same session (its refresh token unchanged).
    Raises ``MfaNotEnabledError`` without MFA, ``MfaInvalidError`` for a wrong code.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(
        self, principal: Principal, proof: SecondFactorProof, client: ClientInfo = NO_CLIENT
    ) -> TokenPair:
        s = self._s
        tenant = principal.tenant
        await s.throttle_account(tenant, principal.account.id)
        async with s.uow() as uow:
            account = await _current_account(uow, principal, mfa=True)
            session = await uow.sessions.get(tenant.id, principal.session_id)
            now = s.clock.now()
            if session is None or not session.is_active(now):
                raise InvalidTokenError("session ended")
            method = await s.check_second_factor(uow, tenant, account.id, proof)
            session.step_up(method.value)
            if not await uow.sessions.set_assurance(session):
                raise InvalidTokenError("session ended")
            if method is Amr.RECOVERY_CODE:
                await uow.events.add(
                    security_event(
                        EventType.MFA_RECOVERY_CODE_USED,
                        tenant.id,
                        now,
                        client,
                        user_id=account.id,
                        session_id=session.id,
                    )
                )
            # The same session keeps its organization: the tokens keep its claims.
            org = await uow.session_organizations.claims(tenant.id, session.id, account.id)
            pair = s.tokens.pair(session, account, tenant, s.policy_for(tenant), now, org=org)
            await uow.commit()
        return pair


class RenewRecoveryCodes:
    """A new set of ten recovery codes; the old set is dead. Needs an aal2 session.

    Raises ``MfaNotEnabledError`` without MFA, ``MfaRequiredError`` at aal1.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> RecoveryCodes:
        s = self._s
        async with s.uow() as uow:
            account = await _current_account(uow, principal, mfa=True)
            await require_aal2(uow, account, principal.session_id)
            codes = await s.new_recovery_codes(uow, account, s.clock.now())
            await uow.commit()
        return codes


class DisableTotp:
    """Turn MFA off with a current TOTP code from an aal2 session.

    Every factor and recovery code is removed and every other session of the
    user ends. Raises ``MfaNotEnabledError``, ``MfaRequiredError``, ``MfaInvalidError``.
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(
        self, principal: Principal, code: str, client: ClientInfo = NO_CLIENT
    ) -> None:
        s = self._s
        tenant = principal.tenant
        await s.throttle_account(tenant, principal.account.id)
        async with s.uow() as uow:
            account = await _current_account(uow, principal, mfa=True)
            await require_aal2(uow, account, principal.session_id)
            await s.check_second_factor(uow, tenant, account.id, SecondFactorProof(code=code))
            now = s.clock.now()
            await _remove_mfa(uow, account, now)
            await _record_mfa_off(uow, account, now, client, principal.session_id)
            await end_sessions(
                uow,
                tenant.id,
                account.id,
                now,
                client,
                "revoked_by_user",
                by_session_id=principal.session_id,
                keep=principal.session_id,
            )
            await uow.commit()


class ResetMfa:
    """An administrator removes every factor and recovery code of a user of ``tenant``.

    Every session of the user ends, as when the user turns MFA off. Raises
    ``AccountNotFoundError`` for an unknown user (or one of another tenant).
    """

    def __init__(self, services: MfaServices) -> None:
        self._s = services

    async def __call__(
        self, tenant: Tenant, user_id: UUID, client: ClientInfo = NO_CLIENT
    ) -> Account:
        s = self._s
        async with s.uow() as uow:
            account = await uow.accounts.get(tenant.id, user_id)
            if account is None:
                raise AccountNotFoundError("no such user")
            now = s.clock.now()
            was_enabled = account.mfa_enabled
            await _remove_mfa(uow, account, now)
            if was_enabled:
                await _record_mfa_off(uow, account, now, client, None, by="admin")
                await end_sessions(uow, tenant.id, account.id, now, client, "admin")
            await uow.commit()
        return account


async def _remove_mfa(uow: UnitOfWork, account: Account, now: datetime) -> None:
    await uow.totp_factors.delete_for_account(account.tenant_id, account.id)
    await uow.recovery_codes.delete_for_account(account.tenant_id, account.id)
    if account.mfa_enabled:
        account.mfa_enabled = False
        account.updated_at = now
        await uow.accounts.update(account)


async def _record_mfa_off(
    uow: UnitOfWork,
    account: Account,
    now: datetime,
    client: ClientInfo,
    session_id: UUID | None,
    *,
    by: str = "user",
) -> None:
    await uow.events.add(
        security_event(
            EventType.MFA_DISABLED,
            account.tenant_id,
            now,
            client,
            user_id=account.id,
            session_id=session_id,
            by=by,
        )
    )
