"""Passkeys (section 15): registration and sign-in ceremonies, management, admin.

Every WebAuthn check is the ``WebAuthnCeremonies`` port's (py_webauthn). Flows
are stored server-side and spent by their first verify, successful or not:
the take is committed before the response is judged. Slow work (the
signature check) runs outside any transaction.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Mapping
from uuid import UUID

import attrs

from identity.application.assurance import require_aal2
from identity.application.events import security_event
from identity.application.mail_templates import MailTemplates
from identity.application.policy import Policy, policy_for
from identity.application.ports import (
    Clock,
    CredentialDescriptor,
    PresentedAssertion,
    UnitOfWork,
    UnitOfWorkFactory,
    WebAuthnCeremonies,
)
from identity.application.sessions import Principal
from identity.application.throttle import Throttle
from identity.application.tokens import NO_CLIENT, ClientInfo, SessionTokens, TokenPair
from identity.application.webauthn_keys import WebAuthnKeys
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    AccountNotFoundError,
    DomainError,
    EmailNotVerifiedError,
    InvalidTokenError,
)
from identity.domain.events import EventType
from identity.domain.mfa import AAL2
from identity.domain.passkeys import (
    FLOW_TTL,
    USER_HANDLE_BYTES,
    Ceremony,
    Passkey,
    PasskeyNotFoundError,
    RelyingParty,
    SignCountRegressedError,
    UnknownPasskeyError,
    WebAuthnFlow,
    WebAuthnInvalidError,
    default_passkey_name,
    origin_problem,
    passkey_name,
)
from identity.domain.sign_in_methods import SignInMethods
from identity.domain.tenants import Tenant

# The one detail of every failed login (which check failed is not told).
LOGIN_FAILED_DETAIL = "The passkey sign-in could not be verified."
TIMEOUT_MS = int(FLOW_TTL.total_seconds() * 1000)


def relying_party(policy: Policy, tenant: Tenant) -> RelyingParty:
    """The tenant's RP: its RP ID, its name (default the tenant's) and its origins.

    Origins that are not on the RP ID (a tenant that moved only its RP ID) are
    left out; without any, ``https://<RP ID>``.
    """
    rp_id = policy.webauthn_rp_id or "localhost"  # the composition root fills it in
    origins = tuple(o for o in policy.webauthn_origins if origin_problem(o, rp_id) is None)
    return RelyingParty(
        id=rp_id,
        name=policy.webauthn_rp_name or tenant.name,
        origins=origins or (f"https://{rp_id}",),
    )


@attrs.frozen
class FlowStarted:
    """What options answer: the flow id to send back and the ``publicKey`` options."""

    flow_id: str = attrs.field(repr=False)
    expires_in: int
    public_key: Mapping[str, object]


@attrs.frozen
class PasskeyServices:
    """What the passkey use cases share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    ceremonies: WebAuthnCeremonies
    keys: WebAuthnKeys
    tokens: SessionTokens
    throttle: Throttle
    templates: MailTemplates
    policy: Policy

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)

    def new_flow(
        self, tenant: Tenant, ceremony: Ceremony, user_id: UUID | None, *, email_bound: bool
    ) -> tuple[str, WebAuthnFlow]:
        flow_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        flow = WebAuthnFlow(
            key=self.keys.flow_key(flow_id),
            tenant_id=tenant.id,
            ceremony=ceremony,
            user_id=user_id,
            email_bound=email_bound,
            created_at=now,
            expires_at=now + FLOW_TTL,
        )
        return flow_id, flow

    async def take_flow(self, flow_id: str) -> WebAuthnFlow:
        """Spend the flow (committed at once, whatever comes next)."""
        async with self.uow() as uow:
            flow = await uow.webauthn_flows.take(self.keys.flow_key(flow_id))
            await uow.commit()
        if flow is None:
            raise WebAuthnInvalidError("unknown or spent flow")
        return flow


def _descriptor(passkey: Passkey) -> CredentialDescriptor:
    return CredentialDescriptor(passkey.credential_id, passkey.transports)


async def _current_account(uow: UnitOfWork, principal: Principal) -> Account:
    account = await uow.accounts.get(principal.tenant.id, principal.account.id)
    if account is None or not account.is_active:
        raise InvalidTokenError("account gone or disabled")
    return account


# --- registration -----------------------------------------------------------------


class StartPasskeyRegistration:
    """Creation options for the caller; with MFA on the session must be aal2."""

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> FlowStarted:
        s = self._s
        tenant = principal.tenant
        async with s.uow() as uow:
            account = await _current_account(uow, principal)
            await require_aal2(uow, account, principal.session_id)
            handle = await uow.passkeys.user_handle(
                tenant.id, account.id, os.urandom(USER_HANDLE_BYTES)
            )
            existing = await uow.passkeys.list_for_account(tenant.id, account.id)
            flow_id, flow = s.new_flow(tenant, Ceremony.REGISTRATION, account.id, email_bound=False)
            await uow.webauthn_flows.add(flow)
            await uow.commit()
        options = s.ceremonies.creation_options(
            relying_party(s.policy_for(tenant), tenant),
            user_handle=handle,
            user_name=account.email.value,
            display_name=account.full_name or account.email.value,
            challenge=s.keys.challenge(flow_id),
            exclude=[_descriptor(passkey) for passkey in existing],
            timeout_ms=TIMEOUT_MS,
        )
        return FlowStarted(flow_id, int(FLOW_TTL.total_seconds()), options)


@attrs.frozen
class FinishRegistration:
    principal: Principal
    flow_id: str = attrs.field(repr=False)
    credential: Mapping[str, object] = attrs.field(repr=False)
    name: str | None = None
    client: ClientInfo = NO_CLIENT


class FinishPasskeyRegistration:
    """Verify a creation response and store the passkey.

    ``WebAuthnInvalidError`` for an unusable flow or a failed check,
    ``PasskeyExistsError`` for a credential the tenant holds already,
    ``MfaRequiredError`` without aal2 when MFA is on. Records ``passkey.added``
    and mails the owner a notice.
    """

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, command: FinishRegistration) -> Passkey:
        s = self._s
        principal = command.principal
        tenant = principal.tenant
        name = passkey_name(command.name) if command.name is not None else None
        flow = await s.take_flow(command.flow_id)
        flow.ensure_finishes(tenant.id, Ceremony.REGISTRATION, s.clock.now(), principal.account.id)
        policy = s.policy_for(tenant)
        credential = s.ceremonies.verify_registration(
            command.credential,
            rp=relying_party(policy, tenant),
            challenge=s.keys.challenge(command.flow_id),
        )
        async with s.uow() as uow:
            now = s.clock.now()
            account = await _current_account(uow, principal)
            await require_aal2(uow, account, principal.session_id)
            passkey = Passkey(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                user_id=account.id,
                credential_id=credential.credential_id,
                public_key=credential.public_key,
                sign_count=credential.sign_count,
                transports=credential.transports,
                backup_eligible=credential.backup_eligible,
                backed_up=credential.backed_up,
                aaguid=credential.aaguid,
                name=name or default_passkey_name(now),
                created_at=now,
            )
            await uow.passkeys.add(passkey)
            await uow.events.add(
                security_event(
                    EventType.PASSKEY_ADDED,
                    tenant.id,
                    now,
                    command.client,
                    user_id=account.id,
                    session_id=principal.session_id,
                    passkey_id=str(passkey.id),
                )
            )
            notice = s.templates.passkey_added_notice(
                account.email.value,
                name=passkey.name,
                added_at=f"{now:%Y-%m-%d %H:%M} UTC",
                sender=policy.email_from,
            )
            await uow.outbox.add(tenant.id, notice, now)
            await uow.commit()
        return passkey


# --- sign-in ------------------------------------------------------------------------


@attrs.frozen
class StartLogin:
    tenant: Tenant
    email: Email | None = None


class StartPasskeyLogin:
    """Request options: discoverable (no email), or the account's passkeys by email.

    An address without an account or without passkeys gets decoys derived
    from it, after the same reads and writes: the answer never tells whether
    the account or its passkeys exist, and never names an account.
    """

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, command: StartLogin) -> FlowStarted:
        s = self._s
        tenant = command.tenant
        policy = s.policy_for(tenant)
        email = command.email
        if email is not None:
            await s.throttle.check(tenant.id, "login", email.key, policy.rate_limit_login)
        async with s.uow() as uow:
            found = await uow.passkeys.list_for_email(tenant.id, email.key) if email else []
            owner = found[0].user_id if found else None
            flow_id, flow = s.new_flow(
                tenant, Ceremony.AUTHENTICATION, owner, email_bound=email is not None
            )
            await uow.webauthn_flows.add(flow)
            await uow.commit()
        allow: list[CredentialDescriptor] = []
        if email is not None:
            # Derived on every email-first call, used or not: the same work either way.
            decoys = s.keys.decoys(tenant.id, email.key)
            allow = [_descriptor(passkey) for passkey in found] if found else decoys
        options = s.ceremonies.request_options(
            relying_party(policy, tenant),
            challenge=s.keys.challenge(flow_id),
            allow=allow,
            timeout_ms=TIMEOUT_MS,
        )
        return FlowStarted(flow_id, int(FLOW_TTL.total_seconds()), options)


@attrs.frozen
class FinishLogin:
    tenant: Tenant
    flow_id: str = attrs.field(repr=False)
    credential: Mapping[str, object] = attrs.field(repr=False)
    client: ClientInfo = NO_CLIENT


class FinishPasskeyLogin:
    """Verify an assertion and open an aal2 session (no ``mfa_required``: a UV passkey is
    already multi-factor).

    The flow is judged first (``WebAuthnInvalidError``); then a credential the
    tenant does not hold is ``PasskeyNotFoundError`` unless it is one of the
    service's decoys (``WebAuthnInvalidError``); a failed check, a regressed
    counter (also recorded as ``passkey.sign_count_regressed``) and a
    credential of another account than the flow's are ``WebAuthnInvalidError``;
    a disabled account ``AccountDisabledError`` after a valid assertion.

    One transaction spends the flow, reads the passkey and writes the sign-in:
    the checks in between are sub-millisecond CPU work without I/O (no slow
    hash here), and a sign-in is the hot path. Every refusal commits what it
    has (the spent flow, its ``login.failed``) before it is raised.
    """

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, command: FinishLogin) -> TokenPair:
        s = self._s
        try:
            assertion: PresentedAssertion | None = s.ceremonies.read_assertion(command.credential)
        except WebAuthnInvalidError:
            assertion = None  # refused once the flow is spent and judged
        async with s.uow() as uow:
            try:
                pair = await self._sign_in(uow, command, assertion)
            except DomainError:
                # Refused: the flow stays spent, and a refusal's events are kept.
                await uow.commit()
                raise
            await uow.commit()
        return pair

    async def _sign_in(
        self, uow: UnitOfWork, command: FinishLogin, assertion: PresentedAssertion | None
    ) -> TokenPair:
        s = self._s
        tenant = command.tenant
        policy = s.policy_for(tenant)
        flow = await uow.webauthn_flows.take(s.keys.flow_key(command.flow_id))
        if flow is None:
            raise WebAuthnInvalidError("unknown or spent flow")
        flow.ensure_finishes(tenant.id, Ceremony.AUTHENTICATION, s.clock.now())
        if assertion is None:
            raise WebAuthnInvalidError("malformed credential")
        found = await uow.passkeys.get_for_sign_in(tenant.id, assertion.credential_id)
        if found is None:
            if s.keys.is_decoy(tenant.id, assertion.credential_id):
                raise WebAuthnInvalidError("a decoy")
            raise PasskeyNotFoundError("unknown credential")
        passkey, account, handle = found.passkey, found.account, found.user_handle
        await s.throttle.check(tenant.id, "login", account.email.key, policy.rate_limit_login)
        if not flow.admits(passkey) or (
            assertion.user_handle is not None and assertion.user_handle != handle
        ):
            await self._refuse(uow, command, passkey, "wrong_account")
            raise WebAuthnInvalidError("credential of another account")
        try:
            verified = s.ceremonies.verify_assertion(
                assertion,
                rp=relying_party(policy, tenant),
                challenge=s.keys.challenge(command.flow_id),
                public_key=passkey.public_key,
            )
        except WebAuthnInvalidError:
            await self._refuse(uow, command, passkey, "assertion_invalid")
            raise
        previous = passkey.sign_count
        try:
            passkey.record_sign_in(verified.sign_count, verified.backed_up, s.clock.now())
        except SignCountRegressedError:
            await self._refuse(uow, command, passkey, "sign_count_regressed", regressed=True)
            raise
        try:
            account.ensure_can_log_in()
        except AccountDisabledError:
            await self._refuse(uow, command, passkey, "account_disabled")
            raise
        except EmailNotVerifiedError:
            await self._refuse(uow, command, passkey, "email_not_verified")
            raise
        if not await uow.passkeys.record_sign_in(passkey, previous):
            # A concurrent sign-in moved the counter (or the passkey went).
            raise WebAuthnInvalidError("counter moved meanwhile")
        # A disable or erasure since the read above is caught by ``sessions.add``.
        pair = await s.tokens.start(
            uow, account, tenant, policy, command.client, amr=passkey.amr, aal=AAL2
        )
        await uow.events.add(
            security_event(
                EventType.LOGIN_SUCCEEDED,
                tenant.id,
                s.clock.now(),
                command.client,
                user_id=account.id,
                session_id=pair.session_id,
                method="passkey",
                aal=AAL2,
                passkey_id=str(passkey.id),
            )
        )
        return pair

    async def _refuse(
        self,
        uow: UnitOfWork,
        command: FinishLogin,
        passkey: Passkey,
        reason: str,
        *,
        regressed: bool = False,
    ) -> None:
        """Record the refusal of a known credential; the caller commits (nothing else was
        written)."""
        s = self._s
        now = s.clock.now()
        if regressed:
            await uow.events.add(
                security_event(
                    EventType.PASSKEY_SIGN_COUNT_REGRESSED,
                    command.tenant.id,
                    now,
                    command.client,
                    user_id=passkey.user_id,
                    passkey_id=str(passkey.id),
                )
            )
        await uow.events.add(
            security_event(
                EventType.LOGIN_FAILED,
                command.tenant.id,
                now,
                command.client,
                user_id=passkey.user_id,
                method="passkey",
                reason=reason,
                passkey_id=str(passkey.id),
            )
        )


# --- management -------------------------------------------------------------------


class ListPasskeys:
    """The caller's passkeys, oldest first."""

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> list[Passkey]:
        async with self._s.uow() as uow:
            return await uow.passkeys.list_for_account(principal.tenant.id, principal.account.id)


async def _own_passkey(
    uow: UnitOfWork, tenant_id: UUID, user_id: UUID, passkey_id: UUID
) -> Passkey:
    passkey = await uow.passkeys.get(tenant_id, passkey_id)
    if passkey is None or passkey.user_id != user_id:
        raise UnknownPasskeyError(str(passkey_id))
    return passkey


class RenamePasskey:
    """``UnknownPasskeyError`` for a passkey not the caller's; ``InvalidPasskeyNameError``."""

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal, passkey_id: UUID, name: str) -> Passkey:
        async with self._s.uow() as uow:
            passkey = await _own_passkey(uow, principal.tenant.id, principal.account.id, passkey_id)
            passkey.rename(name)
            if not await uow.passkeys.rename(passkey):
                raise UnknownPasskeyError(str(passkey_id))
            await uow.commit()
        return passkey


class DeletePasskey:
    """Remove one of the caller's passkeys.

    ``UnknownPasskeyError`` when it is not the caller's, ``MfaRequiredError``
    without aal2 when MFA is on, ``LastSignInMethodError`` when it is the last
    way to sign in (``SignInMethods``). Removals of one account are serialised
    on the account row. The sessions it started stay.
    """

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(
        self, principal: Principal, passkey_id: UUID, client: ClientInfo = NO_CLIENT
    ) -> None:
        s = self._s
        tenant = principal.tenant
        async with s.uow() as uow:
            now = s.clock.now()
            account = await _current_account(uow, principal)
            account.touch(now)
            await uow.accounts.update(account)  # takes the account's row lock
            account = await _current_account(uow, principal)
            await require_aal2(uow, account, principal.session_id)
            passkey = await _own_passkey(uow, tenant.id, account.id, passkey_id)
            links = await uow.external_identities.list_for_account(tenant.id, account.id)
            count = await uow.passkeys.count_for_account(tenant.id, account.id)
            SignInMethods.of(
                account, identities=len(links), passkeys=count
            ).ensure_one_remains_without("passkey")
            await uow.passkeys.delete(tenant.id, passkey.id)
            await uow.events.add(
                security_event(
                    EventType.PASSKEY_REMOVED,
                    tenant.id,
                    now,
                    client,
                    user_id=account.id,
                    session_id=principal.session_id,
                    passkey_id=str(passkey.id),
                    by="user",
                )
            )
            await uow.commit()


class AdminListPasskeys:
    """A user's passkeys for an administrator; ``AccountNotFoundError`` outside the tenant."""

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, user_id: UUID) -> list[Passkey]:
        async with self._s.uow() as uow:
            if await uow.accounts.get(tenant.id, user_id) is None:
                raise AccountNotFoundError(str(user_id))
            return await uow.passkeys.list_for_account(tenant.id, user_id)


class AdminDeletePasskey:
    """Remove a user's passkey; no last-method rule (the emailed code still signs in)."""

    def __init__(self, services: PasskeyServices) -> None:
        self._s = services

    async def __call__(
        self, tenant: Tenant, user_id: UUID, passkey_id: UUID, client: ClientInfo = NO_CLIENT
    ) -> None:
        s = self._s
        async with s.uow() as uow:
            if await uow.accounts.get(tenant.id, user_id) is None:
                raise AccountNotFoundError(str(user_id))
            passkey = await _own_passkey(uow, tenant.id, user_id, passkey_id)
            await uow.passkeys.delete(tenant.id, passkey.id)
            await uow.events.add(
                security_event(
                    EventType.PASSKEY_REMOVED,
                    tenant.id,
                    s.clock.now(),
                    client,
                    user_id=user_id,
                    passkey_id=str(passkey.id),
                    by="admin",
                )
            )
            await uow.commit()
