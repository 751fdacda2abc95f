"""Sign-in and linking with an external provider (Google, any OIDC provider, GitHub).

The flow is bound to the browser that started it by two secrets: a value kept
in an HttpOnly cookie (stored only as its digest, as the record's key) and the
``state`` sent through the provider (stored only as a digest). The callback
must bring both, at the provider that started it; the record is single use
and expires after ten minutes. The nonce and PKCE verifier never leave the
server. A flow started by a signed-in user (``link_to``) links the provider
identity to that user at the callback instead of signing in.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Literal

import attrs

from identity.application.events import security_event
from identity.application.first_factor import SignInResult, complete_sign_in
from identity.application.pkce import new_code_verifier, new_nonce, new_state, s256_challenge
from identity.application.policy import Policy, policy_for
from identity.application.ports import Clock, IdentityProvider, UnitOfWork, UnitOfWorkFactory
from identity.application.redirects import is_allowed_redirect
from identity.application.tokens import NO_CLIENT, ClientInfo, SessionTokens
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailAlreadyRegisteredError,
    IdentityInUseError,
    InvalidEmailError,
    InvalidTokenError,
    OAuthFailedError,
    ProviderNotConfiguredError,
    TenantNotFoundError,
)
from identity.domain.events import EventType
from identity.domain.external_sign_in import (
    IdentityAlreadyLinkedError,
    LinkedIdentity,
    PendingSignIn,
    identity_to_unlink,
)
from identity.domain.identities import ExternalIdentity, OAuthClient
from identity.domain.mfa import Amr
from identity.domain.tenants import Tenant

SIGN_IN_TTL = timedelta(minutes=10)
# Anything longer than this in a callback parameter is not one of ours.
MAX_PARAMETER_LENGTH = 2048
_MAX_NAME_LENGTH = 200


def digest(value: str) -> str:
    """SHA-256 hex of a high-entropy secret (no key needed: it cannot be guessed)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@attrs.frozen
class ConfiguredProvider:
    """One provider as the deployment configured it."""

    name: str
    """In its paths and stored links: ``google``, ``github`` or the OIDC provider's name."""
    method: Literal["google", "oidc", "github"]
    """How ``login.succeeded`` names the sign-in method."""
    settings_key: str
    """The prefix of its client settings: ``google``, ``github``, ``oidc_<name>``."""
    adapter: IdentityProvider
    redirect_uri: str


@attrs.frozen
class StartSignIn:
    tenant: Tenant
    redirect_to: str | None = None
    provider: str = "google"
    link_to: Account | None = None
    """The signed-in user who asked to link this provider, or None for a sign-in."""


@attrs.frozen
class SignInStarted:
    authorization_url: str = attrs.field(repr=False)
    browser_binding: str = attrs.field(repr=False)
    """The value the browser keeps in its cookie until the callback."""
    max_age_seconds: int
    redirect_uri: str
    """Where the provider sends the browser back (our callback)."""


@attrs.frozen
class FinishSignIn:
    tenant: Tenant
    """The tenant of the request; the pending sign-in's own tenant wins when there is one."""
    browser_binding: str | None = attrs.field(repr=False)
    state: str | None = attrs.field(repr=False)
    code: str | None = attrs.field(repr=False)
    error: str | None = None
    client: ClientInfo = ClientInfo()
    provider: str = "google"


@attrs.frozen
class SignedIn:
    tokens: SignInResult
    redirect_to: str | None


@attrs.frozen
class Linked:
    """The callback of a link flow: the identity is now the user's."""

    link: LinkedIdentity
    redirect_to: str | None


@attrs.frozen
class ExternalSignInServices:
    """What both halves of the flow share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    providers: Mapping[str, ConfiguredProvider]
    tokens: SessionTokens
    policy: Policy
    normalise_email: Callable[[str], Email]

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)

    def provider(self, name: str, policy: Policy) -> tuple[ConfiguredProvider, OAuthClient]:
        """The provider and the tenant's client, or ``ProviderNotConfiguredError``."""
        configured = self.providers.get(name)
        if configured is None:
            raise ProviderNotConfiguredError(name)
        client = policy.client_for(configured.settings_key)
        if client is None:
            raise ProviderNotConfiguredError(name)
        return configured, client


class StartExternalSignIn:
    """Open a pending sign-in (or link) and return the provider URL to send the browser to.

    Raises ``ProviderNotConfiguredError`` when the tenant has no client for the
    provider, ``OAuthFailedError`` for a ``redirect_to`` outside the allowlist,
    ``ProviderUnavailableError`` when the provider cannot be reached, and for a
    link ``IdentityInUseError`` when the user has an identity there already.
    """

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(self, command: StartSignIn) -> SignInStarted:
        s = self._s
        policy = s.policy_for(command.tenant)
        provider, client = s.provider(command.provider, policy)
        if command.link_to is not None and provider.name in command.link_to.identities:
            raise IdentityInUseError(provider.name)
        if command.redirect_to is not None and not is_allowed_redirect(
            command.redirect_to, policy.oauth_redirect_allowlist
        ):
            raise OAuthFailedError("redirect_to is not an allowed redirect target")
        binding, state = new_state(), new_state()
        nonce, verifier = new_nonce(), new_code_verifier()
        # Discovery may hit the network: done before the transaction opens.
        url = await provider.adapter.authorization_url(
            client,
            redirect_uri=provider.redirect_uri,
            state=state,
            nonce=nonce,
            code_challenge=s256_challenge(verifier),
        )
        async with s.uow() as uow:
            now = s.clock.now()
            await uow.oauth_states.add(
                PendingSignIn(
                    key=digest(binding),
                    tenant_id=command.tenant.id,
                    provider=provider.name,
                    state_digest=digest(state),
                    nonce=nonce,
                    code_verifier=verifier,
                    redirect_to=command.redirect_to,
                    created_at=now,
                    expires_at=now + SIGN_IN_TTL,
                    link_user_id=command.link_to.id if command.link_to is not None else None,
                )
            )
            await uow.commit()
        return SignInStarted(url, binding, int(SIGN_IN_TTL.total_seconds()), provider.redirect_uri)


class FinishExternalSignIn:
    """The callback: check the browser binding, redeem the code, then sign in or link.

    Sign-in: accounts are found by the provider's subject. An unknown subject
    is linked to the account with the same email only when the provider
    vouches for the email; otherwise the sign-in fails (it never logs into
    that account). With no such account a verified one without password is
    made. Link: the identity becomes the flow's user's, unless another user
    has it (``IdentityInUseError``).
    Raises ``OAuthFailedError`` (safe message), ``ProviderNotConfiguredError``,
    ``ProviderUnavailableError``, ``AccountDisabledError``, ``IdentityInUseError``.
    """

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(self, command: FinishSignIn) -> SignedIn | Linked:
        s = self._s
        pending, tenant = await self._take_pending(command)
        policy = s.policy_for(tenant)
        provider, client = s.provider(command.provider, policy)
        if pending is not None and pending.provider != provider.name:
            # Started at another provider: its state means nothing here.
            pending = None
        if command.error is not None:
            raise OAuthFailedError("the sign-in was cancelled or refused at the provider")
        if not self._binds(pending, command, s.clock.now()):
            raise OAuthFailedError("the sign-in request is invalid or has expired; start again")
        assert pending is not None  # _binds checked it
        if pending.redirect_to is not None and not is_allowed_redirect(
            pending.redirect_to, policy.oauth_redirect_allowlist
        ):
            raise OAuthFailedError("redirect_to is no longer an allowed redirect target")
        if not command.code or len(command.code) > MAX_PARAMETER_LENGTH:
            raise OAuthFailedError("the provider sent no usable authorization code")
        # The network call to the provider runs outside any transaction.
        identity = await provider.adapter.exchange(
            client,
            code=command.code,
            redirect_uri=provider.redirect_uri,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
        if pending.link_user_id is not None:
            link = await self._link(tenant, pending.link_user_id, identity, command.client)
            return Linked(link, pending.redirect_to)
        tokens = await self._sign_in(tenant, policy, provider, identity, command.client)
        return SignedIn(tokens, pending.redirect_to)

    async def _take_pending(self, command: FinishSignIn) -> tuple[PendingSignIn | None, Tenant]:
        """Spend the pending sign-in this browser holds (single use, even when it fails)."""
        binding = command.browser_binding
        if not binding or len(binding) > MAX_PARAMETER_LENGTH:
            return None, command.tenant
        async with self._s.uow() as uow:
            pending = await uow.oauth_states.take(digest(binding))
            tenant = await uow.tenants.get(pending.tenant_id) if pending is not None else None
            await uow.commit()
        if pending is None:
            return None, command.tenant
        # The provider redirects the browser without any X-Tenant header: the
        # tenant that started the flow is the one it finishes in.
        if tenant is None or tenant.disabled:
            raise TenantNotFoundError(str(pending.tenant_id))
        return pending, tenant

    @staticmethod
    def _binds(pending: PendingSignIn | None, command: FinishSignIn, now: datetime) -> bool:
        state = command.state
        return (
            pending is not None
            and not pending.is_expired(now)
            and state is not None
            and 0 < len(state) <= MAX_PARAMETER_LENGTH
            and hmac.compare_digest(pending.state_digest, digest(state))
        )

    async def _link(
        self,
        tenant: Tenant,
        user_id: uuid.UUID,
        identity: ExternalIdentity,
        client: ClientInfo,
    ) -> LinkedIdentity:
        s = self._s
        async with s.uow() as uow:
            account = await uow.accounts.get(tenant.id, user_id)
            if account is None:
                raise OAuthFailedError("the account to link to no longer exists")
            if not account.is_active:
                raise AccountDisabledError("the account is disabled")
            existing = await uow.external_identities.get(
                tenant.id, identity.provider, identity.subject
            )
            if existing is not None:
                if existing.user_id != account.id:
                    raise IdentityInUseError(identity.provider)
                return existing  # linked already: nothing to do
            link = LinkedIdentity(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                user_id=account.id,
                provider=identity.provider,
                subject=identity.subject,
                email_at_link=identity.email,
                created_at=s.clock.now(),
            )
            try:
                await uow.external_identities.add(link)
            except IdentityAlreadyLinkedError:
                # Another user linked it a moment ago.
                raise IdentityInUseError(identity.provider) from None
            await uow.events.add(
                security_event(
                    EventType.IDENTITY_LINKED,
                    tenant.id,
                    link.created_at,
                    client,
                    user_id=account.id,
                    provider=identity.provider,
                )
            )
            await uow.commit()
        return link

    async def _sign_in(
        self,
        tenant: Tenant,
        policy: Policy,
        provider: ConfiguredProvider,
        identity: ExternalIdentity,
        client: ClientInfo,
    ) -> SignInResult:
        s = self._s
        for attempt in (1, 2):
            try:
                async with s.uow() as uow:
                    account = await self._account_for(uow, tenant, identity, client)
                    if not account.is_active:
                        raise AccountDisabledError("the account is disabled")
                    result = await complete_sign_in(
                        uow,
                        s.tokens,
                        account,
                        tenant,
                        policy,
                        client,
                        Amr.FEDERATED,
                        provider=provider.method,
                    )
                    await uow.commit()
                    return result
            except (EmailAlreadyRegisteredError, IdentityAlreadyLinkedError, IdentityInUseError):
                # A concurrent first sign-in of the same person won the race:
                # once more, and the link it made is found.
                if attempt == 2:
                    raise OAuthFailedError(
                        "the sign-in could not be completed; try again"
                    ) from None
        raise AssertionError("unreachable")

    async def _account_for(
        self, uow: UnitOfWork, tenant: Tenant, identity: ExternalIdentity, client: ClientInfo
    ) -> Account:
        s = self._s
        now = s.clock.now()
        link = await uow.external_identities.get(tenant.id, identity.provider, identity.subject)
        if link is not None:
            # The subject decides, whatever the provider now says the email is.
            linked = await uow.accounts.get(tenant.id, link.user_id)
            if linked is None:
                raise OAuthFailedError("the linked account no longer exists")
            return linked
        if identity.email is None:
            raise OAuthFailedError("the provider did not share an email address")
        if not identity.email_verified:
            raise OAuthFailedError("the provider has not verified this email address")
        try:
            email = s.normalise_email(identity.email)
        except InvalidEmailError:
            raise OAuthFailedError("the provider sent an unusable email address") from None
        account = await uow.accounts.get_by_email(tenant.id, email.key)
        if account is None:
            account = Account(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                email=email,
                created_at=now,
                updated_at=now,
                full_name=identity.name[:_MAX_NAME_LENGTH] if identity.name else None,
                is_verified=True,
                verified_at=now,
            )
            await uow.accounts.add(account)
            await uow.events.add(
                security_event(
                    EventType.USER_CREATED,
                    tenant.id,
                    now,
                    client,
                    user_id=account.id,
                    has_password=False,
                    provider=identity.provider,
                )
            )
        else:
            if not account.is_active:
                raise AccountDisabledError("the account is disabled")
            if identity.provider in account.identities:
                # Same email, another person at that provider (or a re-created account).
                raise OAuthFailedError(
                    "this email's account is linked to another account at this provider"
                )
            if not account.is_verified:
                await uow.events.add(
                    security_event(
                        EventType.USER_VERIFIED,
                        tenant.id,
                        now,
                        client,
                        user_id=account.id,
                        method=identity.provider,
                    )
                )
            account.verify_email_by_provider(now)
            await uow.accounts.update(account)
        await uow.external_identities.add(
            LinkedIdentity(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                user_id=account.id,
                provider=identity.provider,
                subject=identity.subject,
                email_at_link=email.value,
                created_at=now,
            )
        )
        await uow.events.add(
            security_event(
                EventType.IDENTITY_LINKED,
                tenant.id,
                now,
                client,
                user_id=account.id,
                provider=identity.provider,
            )
        )
        account.identities = tuple(sorted({*account.identities, identity.provider}))
        return account


class ListIdentities:
    """The caller's linked identities, oldest first."""

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, account: Account) -> list[LinkedIdentity]:
        async with self._s.uow() as uow:
            return await uow.external_identities.list_for_account(tenant.id, account.id)


class UnlinkIdentity:
    """Remove the caller's identity at ``provider``.

    Raises ``IdentityNotLinkedError`` when there is none and
    ``LastSignInMethodError`` when the account would be left with no password,
    no other identity and no passkey. Concurrent unlinks of one account are serialised on
    the account row, so two cannot each remove "the other last" identity.
    """

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(
        self,
        tenant: Tenant,
        account_id: uuid.UUID,
        provider: str,
        client: ClientInfo = NO_CLIENT,
    ) -> None:
        s = self._s
        async with s.uow() as uow:
            account = await uow.accounts.get(tenant.id, account_id)
            if account is None:
                raise InvalidTokenError("account gone")
            account.touch(s.clock.now())
            await uow.accounts.update(account)  # takes the account's row lock
            account = await uow.accounts.get(tenant.id, account_id)
            assert account is not None
            links = await uow.external_identities.list_for_account(tenant.id, account.id)
            passkeys = await uow.passkeys.count_for_account(tenant.id, account.id)
            target = identity_to_unlink(account, links, provider, passkeys=passkeys)
            await uow.external_identities.delete(tenant.id, target.id)
            await uow.events.add(
                security_event(
                    EventType.IDENTITY_UNLINKED,
                    tenant.id,
                    s.clock.now(),
                    client,
                    user_id=account.id,
                    provider=provider,
                )
            )
            await uow.commit()
