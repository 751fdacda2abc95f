"""Sign-in with an OpenID Connect provider (Google): start the flow, finish it.

The flow is bound to the browser that started it by two secrets: a value kept
in an HttpOnly cookie (stored only as its digest, as the record's key) and the
``state`` sent through the provider (stored only as a digest). The callback
must bring both; the record is single use and expires after ten minutes. The
nonce and PKCE verifier never leave the server.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from identity.application.first_factor import SignInResult, complete_sign_in
from identity.application.pkce import new_code_verifier, new_nonce, new_state, s256_challenge
from identity.application.policy import Policy, policy_for
from identity.application.ports import Clock, IdentityProvider, UnitOfWork, UnitOfWorkFactory
from identity.application.redirects import is_allowed_redirect
from identity.application.tokens import ClientInfo, SessionTokens
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import (
    AccountDisabledError,
    EmailAlreadyRegisteredError,
    InvalidEmailError,
    OAuthFailedError,
    ProviderNotConfiguredError,
    TenantNotFoundError,
)
from identity.domain.external_sign_in import (
    IdentityAlreadyLinkedError,
    LinkedIdentity,
    PendingSignIn,
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


def oauth_client(policy: Policy) -> OAuthClient:
    """The tenant's Google client, or ``ProviderNotConfiguredError``."""
    if not policy.google_client_id or not policy.google_client_secret:
        raise ProviderNotConfiguredError("google")
    return OAuthClient(policy.google_client_id, policy.google_client_secret)


@attrs.frozen
class StartSignIn:
    tenant: Tenant
    redirect_to: str | None = None


@attrs.frozen
class SignInStarted:
    authorization_url: str = attrs.field(repr=False)
    browser_binding: str = attrs.field(repr=False)
    """The value the browser keeps in its cookie until the callback."""
    max_age_seconds: int


@attrs.frozen
class FinishSignIn:
    tenant: Tenant
    """The tenant of the request; the pending sign-in's own tenant wins when there is one."""
    browser_binding: str | None = attrs.field(repr=False)
    state: str | None = attrs.field(repr=False)
    code: str | None = attrs.field(repr=False)
    error: str | None = None
    client: ClientInfo = ClientInfo()


@attrs.frozen
class SignedIn:
    tokens: SignInResult
    redirect_to: str | None


@attrs.frozen
class ExternalSignInServices:
    """What both halves of the flow share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    provider: IdentityProvider
    tokens: SessionTokens
    policy: Policy
    redirect_uri: str
    normalise_email: Callable[[str], Email]

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)


class StartExternalSignIn:
    """Open a pending sign-in and return the provider URL to send the browser to.

    Raises ``ProviderNotConfiguredError`` when the tenant has no client, and
    ``OAuthFailedError`` for a ``redirect_to`` outside the allowlist or an
    unreachable provider.
    """

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(self, command: StartSignIn) -> SignInStarted:
        s = self._s
        policy = s.policy_for(command.tenant)
        client = oauth_client(policy)
        if command.redirect_to is not None and not is_allowed_redirect(
            command.redirect_to, policy.oauth_redirect_allowlist
        ):
            raise OAuthFailedError("redirect_to is not an allowed redirect target")
        binding, state = new_state(), new_state()
        nonce, verifier = new_nonce(), new_code_verifier()
        # Discovery may hit the network: done before the transaction opens.
        url = await s.provider.authorization_url(
            client,
            redirect_uri=s.redirect_uri,
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
                    state_digest=digest(state),
                    nonce=nonce,
                    code_verifier=verifier,
                    redirect_to=command.redirect_to,
                    created_at=now,
                    expires_at=now + SIGN_IN_TTL,
                )
            )
            await uow.commit()
        return SignInStarted(url, binding, int(SIGN_IN_TTL.total_seconds()))


class FinishExternalSignIn:
    """The callback: check the browser binding, redeem the code, find or make the account.

    Accounts are found by the provider's subject. An unknown subject is linked
    to the account with the same email only when the provider says the email
    is verified; otherwise the sign-in fails (it never logs into that
    account). With no such account a verified one without password is made.
    Raises ``OAuthFailedError`` (safe message), ``ProviderNotConfiguredError``,
    ``AccountDisabledError``.
    """

    def __init__(self, services: ExternalSignInServices) -> None:
        self._s = services

    async def __call__(self, command: FinishSignIn) -> SignedIn:
        s = self._s
        pending, tenant = await self._take_pending(command)
        policy = s.policy_for(tenant)
        client = oauth_client(policy)
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
        identity = await s.provider.exchange(
            client,
            code=command.code,
            redirect_uri=s.redirect_uri,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
        )
        tokens = await self._sign_in(tenant, policy, identity, command.client)
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

    async def _sign_in(
        self, tenant: Tenant, policy: Policy, identity: ExternalIdentity, client: ClientInfo
    ) -> SignInResult:
        s = self._s
        for attempt in (1, 2):
            try:
                async with s.uow() as uow:
                    account = await self._account_for(uow, tenant, identity)
                    if not account.is_active:
                        raise AccountDisabledError("the account is disabled")
                    result = await complete_sign_in(
                        uow, s.tokens, account, tenant, policy, client, Amr.FEDERATED
                    )
                    await uow.commit()
                    return result
            except (EmailAlreadyRegisteredError, IdentityAlreadyLinkedError):
                # A concurrent first sign-in of the same person won the race:
                # once more, and the link it made is found.
                if attempt == 2:
                    raise OAuthFailedError(
                        "the sign-in could not be completed; try again"
                    ) from None
        raise AssertionError("unreachable")

    async def _account_for(
        self, uow: UnitOfWork, tenant: Tenant, identity: ExternalIdentity
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
        else:
            if not account.is_active:
                raise AccountDisabledError("the account is disabled")
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
        if identity.provider == "google":
            account.google_linked = True
        return account
