"""The in-memory account repository."""

from __future__ import annotations

from collections.abc import Hashable
from uuid import UUID

from identity.adapters.memory.external_identities import _LinkKey
from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import AccountRepository, Position
from identity.domain.accounts import Account
from identity.domain.errors import EmailAlreadyRegisteredError
from identity.domain.external_sign_in import LinkedIdentity

# Client session links stay until their client has its back-channel logout token.
_OUTLIVE_THEIR_USER = frozenset({"security_events", "oauth_client_sessions"})


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
