"""The SQLAlchemy unit of work: one connection, one transaction."""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.sealing import Sealers
from identity.adapters.sqlalchemy.accounts import SqlAccountRepository
from identity.adapters.sqlalchemy.api_keys import SqlApiKeyRepository
from identity.adapters.sqlalchemy.browser_sessions import SqlBrowserSessionRepository
from identity.adapters.sqlalchemy.code_requests import SqlCodeRequestQueue
from identity.adapters.sqlalchemy.events import SqlEventRepository
from identity.adapters.sqlalchemy.external_identities import SqlExternalIdentityRepository
from identity.adapters.sqlalchemy.invalidated_tokens import SqlInvalidatedTokenRepository
from identity.adapters.sqlalchemy.mfa import (
    SqlMfaChallengeRepository,
    SqlRecoveryCodeRepository,
    SqlTotpFactorRepository,
)
from identity.adapters.sqlalchemy.oauth import (
    SqlAuthorizationCodeRepository,
    SqlClientSessionRepository,
    SqlConsentRepository,
    SqlOAuthClientRepository,
)
from identity.adapters.sqlalchemy.oauth_states import SqlOAuthStateRepository
from identity.adapters.sqlalchemy.organizations import attach as attach_organizations
from identity.adapters.sqlalchemy.otp_challenges import SqlOtpChallengeRepository
from identity.adapters.sqlalchemy.outbox import SqlOutboxRepository
from identity.adapters.sqlalchemy.passkeys import SqlPasskeyRepository, SqlWebAuthnFlowRepository
from identity.adapters.sqlalchemy.sessions import SqlSessionRepository
from identity.adapters.sqlalchemy.tenants import SqlTenantRepository
from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.adapters.sqlalchemy.webhooks import SqlWebhookDeliveryQueue, SqlWebhookRepository
from identity.application.ports import (
    InvitationRepository,
    MembershipRepository,
    OrganizationRepository,
    RoleRepository,
    SessionOrganizationRepository,
    UnitOfWork,
)
from identity.domain.errors import StorageUnavailableError


class SqlUnitOfWork(UnitOfWork):
    organizations: OrganizationRepository
    roles: RoleRepository
    memberships: MembershipRepository
    invitations: InvitationRepository
    session_organizations: SessionOrganizationRepository

    def __init__(self, engine: AsyncEngine, sealers: Sealers) -> None:
        self._engine = engine
        self._sealers = sealers
        self._connection: AsyncConnection | None = None

    async def __aenter__(self) -> SqlUnitOfWork:
        try:
            connection = await self._engine.connect()
        except Exception as error:
            # Pool exhausted, database down, shutting down, starting up or full:
            # the edge answers 503.
            if is_unavailable(error):
                raise StorageUnavailableError(type(error).__name__) from error
            raise
        # The transaction begins with the first statement (SQLAlchemy autobegin).
        self._connection = connection
        self.tenants = SqlTenantRepository(connection, self._sealers.tenant_secret)
        self.accounts = SqlAccountRepository(connection)
        self.challenges = SqlOtpChallengeRepository(connection)
        self.sessions = SqlSessionRepository(connection)
        self.invalidated_tokens = SqlInvalidatedTokenRepository(connection)
        self.outbox = SqlOutboxRepository(connection, self._sealers.outbox)
        self.external_identities = SqlExternalIdentityRepository(connection)
        self.oauth_states = SqlOAuthStateRepository(connection, self._sealers.oauth_state)
        self.code_requests = SqlCodeRequestQueue(connection, self._sealers.code_request)
        self.totp_factors = SqlTotpFactorRepository(connection, self._sealers.totp)
        self.recovery_codes = SqlRecoveryCodeRepository(connection)
        self.mfa_challenges = SqlMfaChallengeRepository(connection)
        self.api_keys = SqlApiKeyRepository(connection)
        self.events = SqlEventRepository(connection)
        self.webhooks = SqlWebhookRepository(connection, self._sealers.webhook)
        self.webhook_deliveries = SqlWebhookDeliveryQueue(connection, self._sealers.webhook)
        self.passkeys = SqlPasskeyRepository(connection)
        self.webauthn_flows = SqlWebAuthnFlowRepository(connection)
        attach_organizations(self, connection)
        self.oauth_clients = SqlOAuthClientRepository(connection)
        self.authorization_codes = SqlAuthorizationCodeRepository(connection)
        self.client_sessions = SqlClientSessionRepository(connection)
        self.consents = SqlConsentRepository(connection)
        self.browser_sessions = SqlBrowserSessionRepository(connection)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        exc = exc_info[1] if len(exc_info) > 1 else None
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction():
                await connection.rollback()
            await connection.close()
        except Exception as error:
            # A connection lost mid-transaction cannot roll back (the server
            # already has); whatever the work raised is the error to report.
            if not is_unavailable(error):
                raise
            if exc is None:
                raise StorageUnavailableError(type(error).__name__) from error
        # The connection died under the work: say so as the storage error every
        # caller knows (a 503), not as a driver error.
        if (
            exc is not None
            and not isinstance(exc, StorageUnavailableError)
            and isinstance(exc, Exception)
            and is_unavailable(exc)
        ):
            raise StorageUnavailableError(type(exc).__name__) from exc

    async def commit(self) -> None:
        assert self._connection is not None, "commit outside 'async with'"
        await self._connection.commit()

    async def rollback(self) -> None:
        assert self._connection is not None, "rollback outside 'async with'"
        await self._connection.rollback()

    async def try_lock(self, name: str) -> bool:
        assert self._connection is not None, "try_lock outside 'async with'"
        if self._connection.dialect.name == "postgresql":
            # A transaction-level advisory lock: released at commit or rollback,
            # also when the connection dies, so a crashed holder never blocks others.
            taken = await self._connection.scalar(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": advisory_key(name)}
            )
            return bool(taken)
        # SQLite: every transaction begins IMMEDIATE (engine.py) and so already
        # holds the database's write lock once its first statement has run.
        await self._connection.execute(text("SELECT 1"))
        return True


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``name`` (Postgres advisory locks take a bigint)."""
    digest = hashlib.sha256(f"identity:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
