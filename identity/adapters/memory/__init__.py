"""In-memory storage: every repository port and a transactional unit of work.

A production-grade fake, not a mock: unit tests run the use cases on it and an
embedded single-process mode may too. It mirrors the SQL adapter's semantics:

- Each unit of work is a transaction with READ COMMITTED isolation: a read
  sees the data committed so far plus the transaction's own writes. Writes are
  staged and reach the shared ``MemoryStore`` only on ``commit``; ``rollback``
  and leaving ``async with`` without committing discard them. After either,
  the same unit of work goes on with a new transaction (as SQLAlchemy's
  autobegin does).
- Every write takes a row lock held until the transaction ends; a second
  writer of the same row waits for it, then re-evaluates its condition against
  the committed row, as PostgreSQL does. So ``SessionRepository.rotate`` and
  ``OtpChallengeRepository.record_check`` let exactly one of many concurrent
  callers win, and a racing insert of the same email waits and then raises
  ``EmailAlreadyRegisteredError``. A wait that could never end (a cycle, or a
  task waiting on a lock it holds itself through another unit of work) raises
  ``MemoryDeadlockError`` instead of hanging.
- Entities are deep-copied in and out: mutating what a repository returned, or
  what was passed to it, never changes stored state.

The outbox keeps messages in clear (nothing leaves the process) but keeps the
claim, lease and mark semantics of the SQL outbox.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from uuid import UUID

from identity.adapters.memory.accounts import MemoryAccountRepository
from identity.adapters.memory.api_keys import MemoryApiKeyRepository
from identity.adapters.memory.browser_sessions import MemoryBrowserSessionRepository
from identity.adapters.memory.code_requests import MemoryCodeRequestQueue
from identity.adapters.memory.events import MemoryEventRepository
from identity.adapters.memory.external_identities import MemoryExternalIdentityRepository
from identity.adapters.memory.invalidated_tokens import MemoryInvalidatedTokenRepository
from identity.adapters.memory.mfa import (
    MemoryMfaChallengeRepository,
    MemoryRecoveryCodeRepository,
    MemoryTotpFactorRepository,
)
from identity.adapters.memory.oauth import (
    MemoryAuthorizationCodeRepository,
    MemoryClientSessionRepository,
    MemoryConsentRepository,
    MemoryOAuthClientRepository,
)
from identity.adapters.memory.oauth_states import MemoryOAuthStateRepository
from identity.adapters.memory.organizations import attach as attach_organizations
from identity.adapters.memory.otp_challenges import MemoryOtpChallengeRepository
from identity.adapters.memory.outbox import MemoryOutboxRepository
from identity.adapters.memory.passkeys import MemoryPasskeyRepository, MemoryWebAuthnFlowRepository
from identity.adapters.memory.sessions import MemorySessionRepository
from identity.adapters.memory.store import (
    MemoryDeadlockError,
    MemoryIntegrityError,
    MemoryStore,
    MemoryUnitOfWorkClosedError,
    _round_trip,
    _Transaction,
)
from identity.adapters.memory.tenants import MemoryTenantRepository
from identity.adapters.memory.webhooks import MemoryWebhookDeliveryQueue, MemoryWebhookRepository
from identity.application.ports import (
    ActiveSessionReader,
    InvitationRepository,
    MembershipRepository,
    OrganizationRepository,
    RoleRepository,
    SessionOrganizationRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from identity.domain.accounts import Account
from identity.domain.errors import StorageUnavailableError
from identity.domain.organizations import OrgClaims
from identity.domain.sessions import Session

__all__ = [
    "MemoryActiveSessionReader",
    "MemoryDeadlockError",
    "MemoryIntegrityError",
    "MemoryStore",
    "MemoryUnitOfWork",
    "MemoryUnitOfWorkClosedError",
    "memory_uow_factory",
]


class MemoryUnitOfWork(UnitOfWork):
    """One transaction over a ``MemoryStore``; see the module docstring for the semantics."""

    tenants: MemoryTenantRepository
    accounts: MemoryAccountRepository
    challenges: MemoryOtpChallengeRepository
    sessions: MemorySessionRepository
    invalidated_tokens: MemoryInvalidatedTokenRepository
    outbox: MemoryOutboxRepository
    external_identities: MemoryExternalIdentityRepository
    oauth_states: MemoryOAuthStateRepository
    api_keys: MemoryApiKeyRepository
    code_requests: MemoryCodeRequestQueue
    events: MemoryEventRepository
    webhooks: MemoryWebhookRepository
    webhook_deliveries: MemoryWebhookDeliveryQueue
    totp_factors: MemoryTotpFactorRepository
    recovery_codes: MemoryRecoveryCodeRepository
    mfa_challenges: MemoryMfaChallengeRepository
    passkeys: MemoryPasskeyRepository
    webauthn_flows: MemoryWebAuthnFlowRepository
    organizations: OrganizationRepository
    roles: RoleRepository
    memberships: MembershipRepository
    invitations: InvitationRepository
    session_organizations: SessionOrganizationRepository
    oauth_clients: MemoryOAuthClientRepository
    authorization_codes: MemoryAuthorizationCodeRepository
    client_sessions: MemoryClientSessionRepository
    consents: MemoryConsentRepository
    browser_sessions: MemoryBrowserSessionRepository

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self._transaction: _Transaction | None = None

    async def __aenter__(self) -> MemoryUnitOfWork:
        if not self._store.available:
            raise StorageUnavailableError("memory store marked unavailable")
        if self._transaction is not None:
            raise RuntimeError("this unit of work is already open")
        transaction = _Transaction(self._store)
        transaction.task = asyncio.current_task()
        self._transaction = transaction
        self.tenants = MemoryTenantRepository(transaction)
        self.accounts = MemoryAccountRepository(transaction)
        self.challenges = MemoryOtpChallengeRepository(transaction)
        self.sessions = MemorySessionRepository(transaction)
        self.invalidated_tokens = MemoryInvalidatedTokenRepository(transaction)
        self.outbox = MemoryOutboxRepository(transaction)
        self.external_identities = MemoryExternalIdentityRepository(transaction)
        self.oauth_states = MemoryOAuthStateRepository(transaction)
        self.api_keys = MemoryApiKeyRepository(transaction)
        self.code_requests = MemoryCodeRequestQueue(transaction)
        self.events = MemoryEventRepository(transaction)
        self.webhooks = MemoryWebhookRepository(transaction)
        self.webhook_deliveries = MemoryWebhookDeliveryQueue(transaction)
        self.totp_factors = MemoryTotpFactorRepository(transaction)
        self.recovery_codes = MemoryRecoveryCodeRepository(transaction)
        self.mfa_challenges = MemoryMfaChallengeRepository(transaction)
        self.passkeys = MemoryPasskeyRepository(transaction)
        self.webauthn_flows = MemoryWebAuthnFlowRepository(transaction)
        attach_organizations(self, transaction)
        self.oauth_clients = MemoryOAuthClientRepository(transaction)
        self.authorization_codes = MemoryAuthorizationCodeRepository(transaction)
        self.client_sessions = MemoryClientSessionRepository(transaction)
        self.consents = MemoryConsentRepository(transaction)
        self.browser_sessions = MemoryBrowserSessionRepository(transaction)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is None:
            return
        transaction.end(keep=False)
        transaction.open = False

    @_round_trip
    async def commit(self) -> None:
        assert self._transaction is not None, "commit outside 'async with'"
        self._transaction.end(keep=True)

    @_round_trip
    async def rollback(self) -> None:
        assert self._transaction is not None, "rollback outside 'async with'"
        self._transaction.end(keep=False)

    @_round_trip
    async def try_lock(self, name: str) -> bool:
        """An advisory lock held until this transaction ends; False when another holds it."""
        assert self._transaction is not None, "try_lock outside 'async with'"
        self._transaction.ensure_open()
        return self._store.try_lock(self._transaction, ("advisory", name))


def memory_uow_factory(store: MemoryStore) -> UnitOfWorkFactory:
    """A factory of units of work over ``store`` (what the use cases are given)."""
    return functools.partial(MemoryUnitOfWork, store)


class MemoryActiveSessionReader(ActiveSessionReader):
    """The hot read of ``Authenticate`` over a ``MemoryStore``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        async with MemoryUnitOfWork(self._store) as uow:
            session = await uow.sessions.get(tenant_id, session_id)
            if session is None or session.user_id != account_id or not session.is_active(now):
                return None
            account = await uow.accounts.get(tenant_id, account_id)
        if account is None or not account.is_active:
            return None
        return account

    async def session_with_account(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID
    ) -> tuple[Session, Account, OrgClaims | None] | None:
        async with MemoryUnitOfWork(self._store) as uow:
            session = await uow.sessions.get(tenant_id, session_id)
            if session is None or session.user_id != account_id:
                return None
            account = await uow.accounts.get(tenant_id, account_id)
            if account is None:
                return None
            claims = await uow.session_organizations.claims(tenant_id, session_id, account_id)
        return session, account, claims

    async def browser_session(
        self, tenant_id: UUID, key_digest: str
    ) -> tuple[Session, Account] | None:
        async with MemoryUnitOfWork(self._store) as uow:
            browser = await uow.browser_sessions.get(tenant_id, key_digest)
            if browser is None:
                return None
            session = await uow.sessions.get(tenant_id, browser.session_id)
            account = await uow.accounts.get(tenant_id, browser.user_id)
        if session is None or account is None:
            return None
        return session, account

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        async with MemoryUnitOfWork(self._store) as uow:
            rotated = await uow.sessions.rotate(session, presented_jti)
            await uow.commit()
        return rotated
