"""Starting sessions and minting the token pair a client receives."""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from uuid import UUID

import attrs

from identity.application.policy import Policy
from identity.application.ports import Clock, TokenCodec, UnitOfWork
from identity.domain.accounts import Account
from identity.domain.errors import InvalidCredentialsError
from identity.domain.organizations import OrgClaims
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant
from identity.domain.tokens import AccessClaims, RefreshClaims


@attrs.frozen
class TokenPair:
    access_token: str = attrs.field(repr=False)
    expires_in: int
    refresh_token: str = attrs.field(repr=False)
    refresh_token_expires_in: int
    account: Account
    tenant: Tenant
    session_id: UUID | None = None


@attrs.frozen
class ClientInfo:
    """Where a login comes from, recorded on its session."""

    user_agent: str | None = None
    ip: str | None = None


# No request behind the call (the command line, a test): no ip, no user agent.
NO_CLIENT = ClientInfo()


def new_jti() -> str:
    return secrets.token_urlsafe(24)


class SessionTokens:
    """Opens sessions and encodes their tokens; callers own the transaction."""

    def __init__(self, codec: TokenCodec, clock: Clock) -> None:
        self._codec = codec
        self._clock = clock

    def now(self) -> datetime:
        return self._clock.now()

    async def start(
        self,
        uow: UnitOfWork,
        account: Account,
        tenant: Tenant,
        policy: Policy,
        client: ClientInfo,
        *,
        amr: tuple[str, ...],
        aal: str = "aal1",
    ) -> TokenPair:
        """Open a session proven by ``amr`` (RFC 8176 methods) at assurance ``aal``."""
        now = self._clock.now()
        session = Session(
            id=uuid.uuid4(),
            tenant_id=tenant.id,
            user_id=account.id,
            created_at=now,
            last_used_at=now,
            refresh_jti=new_jti(),
            refresh_issued_at=now,
            expires_at=now + policy.refresh_token_ttl,
            user_agent=(client.user_agent or None) and client.user_agent[:512],
            ip=client.ip,
            aal=aal,
            amr=amr,
        )
        if not await uow.sessions.add(session):
            # Deleted or disabled while the credential was being checked.
            raise InvalidCredentialsError("account gone or disabled meanwhile")
        account.last_login_at = now
        return self.pair(session, account, tenant, policy, now)

    def pair(
        self,
        session: Session,
        account: Account,
        tenant: Tenant,
        policy: Policy,
        now: datetime,
        org: OrgClaims | None = None,
    ) -> TokenPair:
        """The live refresh token of ``session`` (re-encoded: the same string every time,
        as the signatures are deterministic) and a fresh access token, with the claims
        of the session's organization when it acts in one."""
        access_expires = now + policy.access_token_ttl
        access = self._codec.encode_access(
            AccessClaims(
                subject=account.id,
                session_id=session.id,
                tenant_id=tenant.id,
                token_id=new_jti(),
                email=account.email.value,
                email_verified=account.is_verified,
                issued_at=now,
                expires_at=access_expires,
                aal=session.aal,
                amr=session.amr,
                org=org,
            )
        )
        refresh = self._codec.encode_refresh(
            RefreshClaims(
                subject=account.id,
                session_id=session.id,
                tenant_id=tenant.id,
                token_id=session.refresh_jti,
                issued_at=session.refresh_issued_at,
                expires_at=session.expires_at,
            )
        )
        return TokenPair(
            access_token=access,
            expires_in=int(policy.access_token_ttl.total_seconds()),
            refresh_token=refresh,
            refresh_token_expires_in=max(0, int((session.expires_at - now).total_seconds())),
            account=account,
            tenant=tenant,
            session_id=session.id,
        )
