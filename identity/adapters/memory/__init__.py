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
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import attrs

from identity.adapters.memory.api_keys import MemoryApiKeyRepository
from identity.adapters.memory.code_requests import MemoryCodeRequestQueue
from identity.adapters.memory.events import MemoryEventRepository
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
from identity.adapters.memory.store import (
    MemoryDeadlockError,
    MemoryIntegrityError,
    MemoryStore,
    MemoryUnitOfWorkClosedError,
    _OutboxRow,
    _round_trip,
    _Table,
    _Transaction,
)
from identity.adapters.memory.webhooks import MemoryWebhookDeliveryQueue, MemoryWebhookRepository

__all__ = [
    "MemoryDeadlockError",
    "MemoryIntegrityError",
    "MemoryStore",
    "MemoryUnitOfWork",
    "MemoryUnitOfWorkClosedError",
    "memory_uow_factory",
]
from identity.application.ports import (
    AccountRepository,
    ActiveSessionReader,
    ExternalIdentityRepository,
    InvalidatedTokenRepository,
    OAuthStateRepository,
    OtpChallengeRepository,
    OutboxItem,
    OutboxRepository,
    Position,
    SessionRepository,
    TenantRepository,
    UnitOfWork,
    UnitOfWorkFactory,
)
from identity.domain.accounts import Account
from identity.domain.errors import (
    EmailAlreadyRegisteredError,
    IdentityInUseError,
    StorageUnavailableError,
    TenantAlreadyExistsError,
)
from identity.domain.external_sign_in import (
    IdentityAlreadyLinkedError,
    LinkedIdentity,
    PendingSignIn,
)
from identity.domain.mail import EmailMessage
from identity.domain.otp import OtpChallenge, OtpPurpose
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant

# Revoked sessions stay a day so a replayed refresh token is still recognised.
_REVOKED_SESSION_RETENTION = timedelta(days=1)
_MAX_ERROR_LENGTH = 500


@attrs.define
class _InvalidatedToken:
    tenant_id: UUID
    expires_at: datetime
    created_at: datetime


class MemoryTenantRepository(TenantRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, Tenant] = _Table(transaction, "tenants", Tenant)

    @_round_trip
    async def get_by_slug(self, slug: str) -> Tenant | None:
        return next((tenant for _, tenant in self._t.rows() if tenant.slug == slug), None)

    @_round_trip
    async def get(self, tenant_id: UUID) -> Tenant | None:
        return self._t.get(tenant_id)

    @_round_trip
    async def list(self) -> list[Tenant]:
        return sorted((tenant for _, tenant in self._t.rows()), key=lambda tenant: tenant.slug)

    @_round_trip
    async def add(self, tenant: Tenant) -> None:
        await self._claim_slug(tenant)
        await self._t.lock(tenant.id)
        if self._t.get(tenant.id) is not None:
            raise MemoryIntegrityError(f"tenant {tenant.id} exists")
        self._t.put(tenant.id, tenant)

    @_round_trip
    async def update(self, tenant: Tenant) -> None:
        await self._t.lock(tenant.id)
        current = self._t.get(tenant.id)
        if current is None:
            return
        if current.slug != tenant.slug:
            await self._claim_slug(tenant)
        self._t.put(tenant.id, tenant)

    async def _claim_slug(self, tenant: Tenant) -> None:
        await self._t.lock(tenant.slug, index="tenants.slug")
        taken = await self.get_by_slug(tenant.slug)
        if taken is not None and taken.id != tenant.id:
            raise TenantAlreadyExistsError(tenant.slug)


class MemoryAccountRepository(AccountRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, Account] = _Table(transaction, "accounts", Account)
        self._links: _Table[_LinkKey, LinkedIdentity] = _Table(
            transaction, "external_identities", LinkedIdentity
        )

    def _with_links(self, account: Account | None) -> Account | None:
        """``identities`` is derived from the linked identities, as in SQL."""
        if account is not None:
            account.identities = tuple(
                sorted(
                    link.provider for _, link in self._links.rows() if link.user_id == account.id
                )
            )
        return account

    @_round_trip
    async def get(self, tenant_id: UUID, account_id: UUID) -> Account | None:
        account = self._t.get(account_id)
        if account is None or account.tenant_id != tenant_id:
            return None
        return self._with_links(account)

    @_round_trip
    async def get_by_email(self, tenant_id: UUID, email_key: str) -> Account | None:
        return self._with_links(self._find_by_email(tenant_id, email_key))

    def _find_by_email(self, tenant_id: UUID, email_key: str) -> Account | None:
        return next(
            (
                account
                for _, account in self._t.rows()
                if account.tenant_id == tenant_id and account.email.key == email_key
            ),
            None,
        )

    @_round_trip
    async def add(self, account: Account) -> None:
        await self._claim_email(account)
        await self._t.lock(account.id)
        if self._t.get(account.id) is not None:
            raise MemoryIntegrityError(f"account {account.id} exists")
        self._t.put(account.id, account)

    @_round_trip
    async def update(self, account: Account) -> None:
        await self._t.lock(account.id)
        current = self._t.get(account.id)
        if current is None or current.tenant_id != account.tenant_id:
            return
        if current.email.key != account.email.key:
            await self._claim_email(account)
        self._t.put(account.id, account)

    @_round_trip
    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Account]:
        start = (after.created_at, after.id) if after is not None else None
        found = sorted(
            (
                account
                for _, account in self._t.rows()
                if account.tenant_id == tenant_id
                and (start is None or (account.created_at, account.id) > start)
            ),
            key=lambda account: (account.created_at, account.id),
        )
        return [account for account in found[:limit] if self._with_links(account) is not None]

    @_round_trip
    async def delete(self, tenant_id: UUID, account_id: UUID) -> bool:
        await self._t.lock(account_id)
        current = self._t.get(account_id)
        if current is None or current.tenant_id != tenant_id:
            return False
        # What ON DELETE CASCADE does in SQL: every row that names the account goes
        # too (sessions, links, factors, whatever table a later port adds), except
        # the security events, which have no foreign key: user.deleted outlives its user.
        transaction = self._t.transaction
        for name in transaction.store.table_names():
            if name in _OUTLIVE_THEIR_USER:
                continue
            rows: _Table[Hashable, object] = _Table(transaction, name, object)
            await rows.delete_where(lambda row: getattr(row, "user_id", None) == account_id)
        self._t.delete(account_id)
        return True

    async def _claim_email(self, account: Account) -> None:
        # The lock stands for the unique index entry: a racing insert waits, then sees the row.
        await self._t.lock((account.tenant_id, account.email.key), index="accounts.email")
        taken = self._find_by_email(account.tenant_id, account.email.key)
        if taken is not None and taken.id != account.id:
            raise EmailAlreadyRegisteredError("email already registered")


_ChallengeKey = tuple[UUID, str, OtpPurpose]
# Client session links stay until their client has its back-channel logout token.
_OUTLIVE_THEIR_USER = frozenset({"security_events", "oauth_client_sessions"})


class MemoryOtpChallengeRepository(OtpChallengeRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[_ChallengeKey, OtpChallenge] = _Table(
            transaction, "challenges", OtpChallenge
        )

    @_round_trip
    async def get(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose
    ) -> OtpChallenge | None:
        return self._t.get((tenant_id, email_key, purpose))

    @_round_trip
    async def replace(self, challenge: OtpChallenge) -> None:
        key = (challenge.tenant_id, challenge.email_key, challenge.purpose)
        await self._t.lock(key)
        self._t.put(key, challenge)

    @_round_trip
    async def record_check(self, challenge: OtpChallenge, attempts_before: int) -> bool:
        key = (challenge.tenant_id, challenge.email_key, challenge.purpose)
        await self._t.lock(key)
        current = self._t.get(key)
        if (
            current is None
            or current.id != challenge.id
            or current.attempts != attempts_before
            or current.consumed_at is not None
        ):
            return False
        current.attempts = challenge.attempts
        current.consumed_at = challenge.consumed_at
        self._t.put(key, current)
        return True

    @_round_trip
    async def record_failure(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose, now: datetime, ttl: timedelta
    ) -> None:
        key = (tenant_id, email_key, purpose)
        await self._t.lock(key)
        current = self._t.get(key)
        if current is None:
            current = OtpChallenge(
                id=uuid4(),
                tenant_id=tenant_id,
                email_key=email_key,
                purpose=purpose,
                code_digest="",  # matches no code
                created_at=now,
                expires_at=now + ttl,
                max_attempts=0,
            )
        current.attempts += 1
        self._t.put(key, current)

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(
            lambda row: row.expires_at < now or row.consumed_at is not None
        )

    @_round_trip
    async def delete_for_email(self, tenant_id: UUID, email_key: str) -> int:
        return await self._t.delete_where(
            lambda row: row.tenant_id == tenant_id and row.email_key == email_key
        )


class MemorySessionRepository(SessionRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, Session] = _Table(transaction, "sessions", Session)
        self._accounts: _Table[UUID, Account] = _Table(transaction, "accounts", Account)

    @_round_trip
    async def add(self, session: Session) -> bool:
        # As the SQL UPDATE of the account row: a concurrent delete or disable waits.
        await self._accounts.lock(session.user_id)
        account = self._accounts.get(session.user_id)
        if account is None or account.tenant_id != session.tenant_id or not account.is_active:
            return False
        await self._t.lock(session.id)
        if self._t.get(session.id) is not None:
            raise MemoryIntegrityError(f"session {session.id} exists")
        account.last_login_at = session.created_at
        self._accounts.put(account.id, account)
        self._t.put(session.id, session)
        return True

    @_round_trip
    async def get(self, tenant_id: UUID, session_id: UUID) -> Session | None:
        session = self._t.get(session_id)
        return session if session is not None and session.tenant_id == tenant_id else None

    @_round_trip
    async def set_assurance(self, session: Session) -> bool:
        await self._t.lock(session.id)
        current = self._t.get(session.id)
        if current is None or current.tenant_id != session.tenant_id or current.revoked_at:
            return False
        current.aal = session.aal
        current.amr = session.amr
        self._t.put(session.id, current)
        return True

    @_round_trip
    async def rotate(self, session: Session, presented_jti: str) -> bool:
        await self._t.lock(session.id)
        current = self._t.get(session.id)
        if (
            current is None
            or current.tenant_id != session.tenant_id
            or current.refresh_jti != presented_jti
            or current.revoked_at is not None
        ):
            return False
        # Only the rotation columns, as the SQL update: a concurrent revoke is not undone.
        current.refresh_jti = session.refresh_jti
        current.previous_refresh_jti = session.previous_refresh_jti
        current.rotated_at = session.rotated_at
        current.refresh_issued_at = session.refresh_issued_at
        current.last_used_at = session.last_used_at
        current.expires_at = session.expires_at
        self._t.put(session.id, current)
        return True

    @_round_trip
    async def revoke(self, tenant_id: UUID, session_id: UUID, now: datetime, reason: str) -> bool:
        await self._t.lock(session_id)
        current = self._t.get(session_id)
        if current is None or current.tenant_id != tenant_id or current.revoked_at is not None:
            return False
        current.revoked_at = now
        current.revoked_reason = reason
        self._t.put(session_id, current)
        return True

    @_round_trip
    async def revoke_all_for_account(
        self,
        tenant_id: UUID,
        account_id: UUID,
        now: datetime,
        reason: str,
        *,
        keep: UUID | None = None,
    ) -> int:
        def matches(session: Session) -> bool:
            return (
                session.tenant_id == tenant_id
                and session.user_id == account_id
                and session.revoked_at is None
                and session.expires_at > now
                and session.id != keep
            )

        def end(session: Session) -> None:
            session.revoked_at = now
            session.revoked_reason = reason

        return await self._t.update_where(matches, end)

    @_round_trip
    async def list_active_for_account(
        self, tenant_id: UUID, account_id: UUID, now: datetime
    ) -> list[Session]:
        sessions = [
            session
            for _, session in self._t.rows()
            if session.tenant_id == tenant_id
            and session.user_id == account_id
            and session.revoked_at is None
            and session.expires_at > now
        ]
        return sorted(sessions, key=lambda session: session.created_at)

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        cutoff = now - _REVOKED_SESSION_RETENTION
        return await self._t.delete_where(
            lambda row: (
                row.expires_at < now or (row.revoked_at is not None and row.revoked_at < cutoff)
            )
        )


class MemoryInvalidatedTokenRepository(InvalidatedTokenRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, _InvalidatedToken] = _Table(
            transaction, "invalidated_tokens", _InvalidatedToken
        )

    @_round_trip
    async def add(self, tenant_id: UUID, jti: str, expires_at: datetime, now: datetime) -> None:
        if self._t.get(jti) is not None:
            return
        await self._t.lock(jti)
        if self._t.get(jti) is not None:
            return  # a concurrent logout recorded it first
        self._t.put(jti, _InvalidatedToken(tenant_id, expires_at, now))

    @_round_trip
    async def contains(self, tenant_id: UUID, jti: str) -> bool:
        entry = self._t.get(jti)
        return entry is not None and entry.tenant_id == tenant_id

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.expires_at < now)


class MemoryOutboxRepository(OutboxRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, _OutboxRow] = _Table(transaction, "outbox", _OutboxRow)

    @_round_trip
    async def add(self, tenant_id: UUID, message: EmailMessage, now: datetime) -> None:
        row = _OutboxRow(
            id=uuid4(),
            tenant_id=tenant_id,
            message=message,
            address_key=message.to.casefold(),
            state="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        await self._t.lock(row.id)
        self._t.put(row.id, row)

    @_round_trip
    async def delete_for_address(self, tenant_id: UUID, email_key: str) -> int:
        # A message being claimed at this moment still goes.
        return self._t.delete_where_unlocked(
            lambda row: row.tenant_id == tenant_id and row.address_key == email_key
        )

    @_round_trip
    async def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[OutboxItem]:
        def due(row: _OutboxRow) -> bool:
            return (
                row.state == "pending"
                and row.next_attempt_at <= now
                and (row.locked_until is None or row.locked_until < now)
            )

        candidates = sorted(
            (row for _, row in self._t.rows() if due(row)), key=lambda row: row.next_attempt_at
        )
        items: list[OutboxItem] = []
        for candidate in candidates:
            if len(items) >= limit:
                break
            # Several workers poll at once: each takes different rows (SKIP LOCKED).
            if not self._t.try_lock(candidate.id):
                continue
            row = self._t.get(candidate.id)
            if row is None or row.message is None or not due(row):
                continue
            row.locked_until = now + lease
            row.attempts += 1
            self._t.put(row.id, row)
            items.append(
                OutboxItem(
                    id=row.id, tenant_id=row.tenant_id, message=row.message, attempts=row.attempts
                )
            )
        return items

    @_round_trip
    async def mark_sent(self, item_id: UUID, now: datetime) -> None:
        def sent(row: _OutboxRow) -> None:
            row.state, row.sent_at, row.message, row.locked_until = "sent", now, None, None

        await self._change(item_id, sent)

    @_round_trip
    async def mark_failed(
        self, item_id: UUID, error: str, next_attempt_at: datetime | None
    ) -> None:
        def failed(row: _OutboxRow) -> None:
            row.last_error = error[:_MAX_ERROR_LENGTH]
            row.locked_until = None
            if next_attempt_at is None:
                row.state, row.message = "dead", None
            else:
                row.next_attempt_at = next_attempt_at

        await self._change(item_id, failed)

    @_round_trip
    async def pending_count(self) -> int:
        return sum(1 for _, row in self._t.rows() if row.state == "pending")

    async def _change(self, item_id: UUID, change: Callable[[_OutboxRow], None]) -> None:
        await self._t.lock(item_id)
        row = self._t.get(item_id)
        if row is not None:
            change(row)
            self._t.put(item_id, row)


_LinkKey = tuple[UUID, str, str]


class MemoryExternalIdentityRepository(ExternalIdentityRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[_LinkKey, LinkedIdentity] = _Table(
            transaction, "external_identities", LinkedIdentity
        )

    @_round_trip
    async def get(self, tenant_id: UUID, provider: str, subject: str) -> LinkedIdentity | None:
        return self._t.get((tenant_id, provider, subject))

    @_round_trip
    async def list_for_account(self, tenant_id: UUID, account_id: UUID) -> list[LinkedIdentity]:
        mine = [
            row
            for _, row in self._t.rows()
            if row.tenant_id == tenant_id and row.user_id == account_id
        ]
        return sorted(mine, key=lambda row: (row.created_at, row.provider))

    @_round_trip
    async def add(self, link: LinkedIdentity) -> None:
        key = (link.tenant_id, link.provider, link.subject)
        # A racing first sign-in waits here, then finds the winner's link.
        await self._t.lock(key)
        # The lock stands for the (account, provider) unique index entry.
        await self._t.lock(
            (link.tenant_id, link.user_id, link.provider), index="external_identities.account"
        )
        if self._t.get(key) is not None:
            raise IdentityAlreadyLinkedError(f"{link.provider} identity already linked")
        if any(
            row.tenant_id == link.tenant_id
            and row.user_id == link.user_id
            and row.provider == link.provider
            for _, row in self._t.rows()
        ):
            raise IdentityInUseError(f"the account has a {link.provider} identity already")
        if any(row.id == link.id for _, row in self._t.rows()):
            raise MemoryIntegrityError(f"linked identity {link.id} exists")
        self._t.put(key, link)

    @_round_trip
    async def delete(self, tenant_id: UUID, link_id: UUID) -> bool:
        return (
            await self._t.delete_where(lambda row: row.tenant_id == tenant_id and row.id == link_id)
            > 0
        )


class MemoryOAuthStateRepository(OAuthStateRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, PendingSignIn] = _Table(transaction, "oauth_states", PendingSignIn)

    @_round_trip
    async def add(self, pending: PendingSignIn) -> None:
        await self._t.lock(pending.key)
        if self._t.get(pending.key) is not None:
            raise MemoryIntegrityError("pending sign-in key exists")
        self._t.put(pending.key, pending)

    @_round_trip
    async def take(self, key: str) -> PendingSignIn | None:
        # Like DELETE ... RETURNING: concurrent takers wait, then find nothing.
        await self._t.lock(key)
        pending = self._t.get(key)
        if pending is not None:
            self._t.delete(key)
        return pending

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.is_expired(now))


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
    oauth_clients: MemoryOAuthClientRepository
    authorization_codes: MemoryAuthorizationCodeRepository
    client_sessions: MemoryClientSessionRepository
    consents: MemoryConsentRepository

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
        self.oauth_clients = MemoryOAuthClientRepository(transaction)
        self.authorization_codes = MemoryAuthorizationCodeRepository(transaction)
        self.client_sessions = MemoryClientSessionRepository(transaction)
        self.consents = MemoryConsentRepository(transaction)
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
