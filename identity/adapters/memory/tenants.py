"""The in-memory tenant repository."""

from __future__ import annotations

from uuid import UUID

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import TenantRepository
from identity.domain.errors import TenantAlreadyExistsError
from identity.domain.tenants import Tenant


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
