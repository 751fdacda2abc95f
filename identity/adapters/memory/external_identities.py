"""The in-memory linked external identities."""

from __future__ import annotations

from uuid import UUID

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import ExternalIdentityRepository
from identity.domain.errors import IdentityInUseError
from identity.domain.external_sign_in import IdentityAlreadyLinkedError, LinkedIdentity

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
