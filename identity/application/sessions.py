"""Use cases of sessions: refresh rotation, logout, bearer authentication."""

from __future__ import annotations

from uuid import UUID

import attrs

from identity.application.assurance import require_aal2
from identity.application.events import security_event
from identity.application.mail_templates import MailTemplates
from identity.application.passwords import check_new_password
from identity.application.policy import Policy, policy_for
from identity.application.ports import (
    ActiveSessionReader,
    Clock,
    CommonPasswords,
    PasswordHasher,
    TokenCodec,
    UnitOfWorkFactory,
)
from identity.application.session_ending import end_session, end_sessions
from identity.application.tokens import NO_CLIENT, ClientInfo, SessionTokens, TokenPair, new_jti
from identity.domain.accounts import Account
from identity.domain.browser_sessions import BROWSER
from identity.domain.errors import (
    AccountDisabledError,
    InvalidCredentialsError,
    InvalidTokenError,
    RefreshTokenReusedError,
    SessionNotFoundError,
)
from identity.domain.events import EventType
from identity.domain.sessions import Presented, Session
from identity.domain.tenants import Tenant
from identity.domain.tokens import AccessClaims


@attrs.frozen
class Principal:
    """The caller behind a valid access token whose session is still active."""

    account: Account
    tenant: Tenant
    session_id: UUID
    claims: AccessClaims


@attrs.frozen
class SessionServices:
    uow: UnitOfWorkFactory
    clock: Clock
    codec: TokenCodec
    tokens: SessionTokens
    hasher: PasswordHasher
    common_passwords: CommonPasswords
    templates: MailTemplates
    policy: Policy
    session_reader: ActiveSessionReader

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)


class Authenticate:
    """Bearer access token -> principal; a token of another tenant is refused."""

    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, access_token: str) -> Principal:
        claims = self._s.codec.decode_access(access_token)
        if claims.tenant_id != tenant.id:
            raise InvalidTokenError("token of another tenant")
        account = await self._s.session_reader.account_for_session(
            tenant.id, claims.session_id, claims.subject, self._s.clock.now()
        )
        if account is None:
            raise InvalidTokenError("session ended, or account gone or disabled")
        return Principal(account, tenant, claims.session_id, claims)


class RefreshSession:
    """Rotate a refresh token atomically, with a grace window for concurrent callers.

    Within the grace window a just-spent token gets the same successor; after
    it, presenting a spent token ends the whole session (token family).
    """

    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(
        self, tenant: Tenant, refresh_token: str, client: ClientInfo = NO_CLIENT
    ) -> TokenPair:
        s = self._s
        claims = s.codec.decode_refresh(refresh_token)
        if claims.tenant_id != tenant.id:
            raise InvalidTokenError("token of another tenant")
        policy = s.policy_for(tenant)
        grace = policy.refresh_reuse_grace
        # The common case needs no transaction: one read, then a rotation that
        # applies only while the presented token is still the live one.
        found = await s.session_reader.session_with_account(
            tenant.id, claims.session_id, claims.subject
        )
        if found is not None and found[1].is_active:
            # The organization claims come with the read, as they are now.
            live, owner, org = found
            now = s.clock.now()
            presented = live.classify(claims.token_id, now, grace)
            if presented is Presented.IN_GRACE:
                return s.tokens.pair(live, owner, tenant, policy, now, org=org)
            if presented is Presented.CURRENT:
                live.rotate(new_jti(), now, policy.refresh_token_ttl)
                if await s.session_reader.rotate(live, claims.token_id):
                    return s.tokens.pair(live, owner, tenant, policy, now, org=org)
        # Everything else (a replay, an ended session, a disabled account, a
        # concurrent rotation that won) is judged again inside a transaction.
        async with s.uow() as uow:
            # No deny-list read here: logging out revokes the token's session in the
            # same transaction as it denies the jti, so a logged-out token always
            # meets a dead session below (one statement less on a hot path).
            account = await uow.accounts.get(tenant.id, claims.subject)
            if account is None:
                raise InvalidTokenError("no account")
            for _ in range(2):
                session = await uow.sessions.get(tenant.id, claims.session_id)
                if session is None or session.user_id != account.id:
                    raise InvalidTokenError("no session")
                now = s.clock.now()
                presented = session.classify(claims.token_id, now, grace)
                if presented is Presented.DEAD:
                    raise InvalidTokenError("session ended")
                if presented is Presented.REUSED:
                    await uow.events.add(
                        security_event(
                            EventType.REFRESH_TOKEN_REUSED,
                            tenant.id,
                            now,
                            client,
                            user_id=account.id,
                            session_id=session.id,
                        )
                    )
                    await end_session(
                        uow, tenant.id, account.id, session.id, now, client, "refresh_token_reused"
                    )
                    await uow.commit()
                    raise RefreshTokenReusedError("refresh token reused")
                if not account.is_active:
                    raise AccountDisabledError("disabled")
                if presented is Presented.IN_GRACE:
                    org = await uow.session_organizations.claims(tenant.id, session.id, account.id)
                    return s.tokens.pair(session, account, tenant, policy, now, org=org)
                session.rotate(new_jti(), now, policy.refresh_token_ttl)
                if await uow.sessions.rotate(session, claims.token_id):
                    # The organization claims as they are now (one indexed read): a
                    # removed member gets none, a changed role the new permissions.
                    org = await uow.session_organizations.claims(tenant.id, session.id, account.id)
                    await uow.commit()
                    return s.tokens.pair(session, account, tenant, policy, now, org=org)
                # A concurrent refresh won the conditional update: look again.
                await uow.rollback()
            raise InvalidTokenError("could not rotate")


class LogOut:
    """Deny the refresh token's jti and end its session. Idempotent."""

    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(
        self, tenant: Tenant, refresh_token: str, client: ClientInfo = NO_CLIENT
    ) -> None:
        claims = self._s.codec.decode_refresh(refresh_token)
        if claims.tenant_id != tenant.id:
            raise InvalidTokenError("token of another tenant")
        async with self._s.uow() as uow:
            now = self._s.clock.now()
            await uow.invalidated_tokens.add(tenant.id, claims.token_id, claims.expires_at, now)
            await end_session(
                uow,
                tenant.id,
                claims.subject,
                claims.session_id,
                now,
                client,
                "logout",
                by_session_id=claims.session_id,
            )
            await uow.commit()


class LogOutEverywhere:
    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal, client: ClientInfo = NO_CLIENT) -> int:
        async with self._s.uow() as uow:
            now = self._s.clock.now()
            ended = await end_sessions(
                uow,
                principal.tenant.id,
                principal.account.id,
                now,
                client,
                "logout_all",
                by_session_id=principal.session_id,
            )
            await uow.commit()
        return len(ended)


class ListSessions:
    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(self, principal: Principal) -> list[Session]:
        async with self._s.uow() as uow:
            found = await uow.sessions.list_active_for_account(
                principal.tenant.id, principal.account.id, self._s.clock.now()
            )
            browsers = await uow.browser_sessions.session_ids_for_account(
                principal.tenant.id, principal.account.id
            )
        return [attrs.evolve(s, kind=BROWSER) if s.id in browsers else s for s in found]


class RevokeSession:
    """End one of the caller's own sessions; another user's is 'not found'."""

    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(
        self, principal: Principal, session_id: UUID, client: ClientInfo = NO_CLIENT
    ) -> None:
        async with self._s.uow() as uow:
            session = await uow.sessions.get(principal.tenant.id, session_id)
            now = self._s.clock.now()
            if (
                session is None
                or session.user_id != principal.account.id
                or not session.is_active(now)
            ):
                raise SessionNotFoundError("no such session")
            await end_session(
                uow,
                principal.tenant.id,
                principal.account.id,
                session_id,
                now,
                client,
                "revoked_by_user",
                by_session_id=principal.session_id,
            )
            await uow.commit()


@attrs.frozen
class ChangePassword:
    principal: Principal
    current_password: str = attrs.field(repr=False)
    new_password: str = attrs.field(repr=False)
    client: ClientInfo = ClientInfo()


class ChangeOwnPassword:
    """Needs the current password (and, with MFA on, an aal2 session: ``MfaRequiredError``);
    every other session ends, the caller's stays."""

    def __init__(self, services: SessionServices) -> None:
        self._s = services

    async def __call__(self, command: ChangePassword) -> None:
        s = self._s
        account = command.principal.account
        tenant = command.principal.tenant
        if account.mfa_enabled:
            # Before the slow hash: an aal1 session is refused without spending it.
            async with s.uow() as uow:
                await require_aal2(uow, account, command.principal.session_id)
        if account.password_hash is None:
            await s.hasher.dummy_verify(command.current_password)
            raise InvalidCredentialsError("no password set")
        if not await s.hasher.verify(command.current_password, account.password_hash):
            raise InvalidCredentialsError("wrong password")
        check_new_password(command.new_password, s.common_passwords, field="new_password")
        checked_hash = account.password_hash
        new_hash = await s.hasher.hash(command.new_password)
        async with s.uow() as uow:
            now = s.clock.now()
            # Read again: the slow checks above ran on the copy read at authentication.
            current = await uow.accounts.get(tenant.id, account.id)
            if current is None or not current.is_active:
                raise InvalidTokenError("account gone or disabled")
            if current.password_hash != checked_hash:
                raise InvalidCredentialsError("password changed meanwhile")
            await require_aal2(uow, current, command.principal.session_id)
            account = current
            account.set_password_hash(new_hash, now)
            await uow.accounts.update(account)
            current_session = command.principal.session_id
            await uow.events.add(
                security_event(
                    EventType.PASSWORD_CHANGED,
                    tenant.id,
                    now,
                    command.client,
                    user_id=account.id,
                    session_id=current_session,
                )
            )
            await end_sessions(
                uow,
                tenant.id,
                account.id,
                now,
                command.client,
                "password_changed",
                by_session_id=current_session,
                keep=current_session,
            )
            await uow.outbox.add(
                tenant.id,
                s.templates.password_changed_notice(
                    account.email.value,
                    sender=s.policy_for(tenant).email_from,
                    locale=account.locale,
                ),
                now,
            )
            await uow.commit()
