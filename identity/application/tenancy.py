"""Tenant resolution and administration."""

from __future__ import annotations

import time
import uuid
from typing import Any

from identity.application.policy import TENANT_SETTINGS, parse_tenant_setting
from identity.application.ports import Clock, UnitOfWorkFactory
from identity.domain.branding import BRANDING_SETTINGS
from identity.domain.errors import TenantNotFoundError
from identity.domain.tenants import DEFAULT_TENANT_SLUG, Tenant, validate_slug


class ResolveTenant:
    """Slug -> active tenant, cached briefly so hot paths skip a query.

    A tenant disabled in another process is refused here at most
    ``cache_seconds`` later.
    """

    def __init__(self, uow: UnitOfWorkFactory, *, cache_seconds: float = 5.0) -> None:
        self._uow = uow
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Tenant | None]] = {}
        self._by_id: dict[uuid.UUID, tuple[float, Tenant | None]] = {}

    async def __call__(self, slug: str | None) -> Tenant:
        # Absent (None) is the default tenant; an empty or blank slug names none.
        slug = (DEFAULT_TENANT_SLUG if slug is None else slug).strip().lower()
        try:
            validate_slug(slug)
        except ValueError:
            # Junk never reaches the database or the cache.
            raise TenantNotFoundError("not a tenant slug") from None
        now = time.monotonic()
        cached = self._cache.get(slug)
        if cached is not None and now - cached[0] < self._ttl:
            tenant = cached[1]
        else:
            async with self._uow() as uow:
                tenant = await uow.tenants.get_by_slug(slug)
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[slug] = (now, tenant)
        if tenant is None or tenant.disabled:
            raise TenantNotFoundError(slug)
        return tenant

    async def by_id(self, tenant_id: uuid.UUID) -> Tenant:
        """As a call by slug, for a tenant named by its id (an API key's)."""
        now = time.monotonic()
        cached = self._by_id.get(tenant_id)
        if cached is not None and now - cached[0] < self._ttl:
            tenant = cached[1]
        else:
            async with self._uow() as uow:
                tenant = await uow.tenants.get(tenant_id)
            if len(self._by_id) > 1000:
                self._by_id.clear()
            self._by_id[tenant_id] = (now, tenant)
        if tenant is None or tenant.disabled:
            raise TenantNotFoundError(str(tenant_id))
        return tenant

    def forget(self) -> None:
        self._cache.clear()
        self._by_id.clear()


class TenantChangeError(ValueError):
    """A refused change; ``field`` names what was wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class TenantAdmin:
    """What the ``identity tenants`` commands do."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def create(self, slug: str, name: str | None = None) -> Tenant:
        tenant = Tenant(
            id=uuid.uuid4(),
            slug=validate_slug(slug),
            name=name or slug,
            created_at=self._clock.now(),
        )
        async with self._uow() as uow:
            await uow.tenants.add(tenant)
            await uow.commit()
        return tenant

    async def list(self) -> list[Tenant]:
        async with self._uow() as uow:
            return await uow.tenants.list()

    async def set(self, slug: str, key: str, value: Any) -> Tenant:
        parse_tenant_setting(key, value)  # refuse a bad value before storing it
        async with self._uow() as uow:
            tenant = await uow.tenants.get_by_slug(slug)
            if tenant is None:
                raise TenantNotFoundError(slug)
            tenant.settings = {**tenant.settings, key: value}
            await uow.tenants.update(tenant)
            await uow.commit()
        return tenant

    async def update(
        self,
        slug: str,
        *,
        name: str | None = None,
        disabled: bool | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Tenant:
        """Change several things at once, with the rules of ``set`` for each setting.

        A null setting value removes the setting (the deployment default applies).
        The default tenant cannot be disabled: the operator's keys live there.
        """
        for key, value in (settings or {}).items():
            try:
                if value is not None or key not in {*TENANT_SETTINGS, *BRANDING_SETTINGS}:
                    parse_tenant_setting(key, value)
            except ValueError as error:
                raise TenantChangeError("settings", str(error)) from None
        if disabled and slug == DEFAULT_TENANT_SLUG:
            raise TenantChangeError("disabled", "the default tenant cannot be disabled")
        async with self._uow() as uow:
            tenant = await uow.tenants.get_by_slug(slug)
            if tenant is None:
                raise TenantNotFoundError(slug)
            if name is not None:
                tenant.name = name
            if disabled is not None:
                tenant.disabled = disabled
            if settings:
                merged = {**tenant.settings, **settings}
                tenant.settings = {k: v for k, v in merged.items() if v is not None}
            await uow.tenants.update(tenant)
            await uow.commit()
        return tenant

    async def set_disabled(self, slug: str, disabled: bool) -> Tenant:
        async with self._uow() as uow:
            tenant = await uow.tenants.get_by_slug(slug)
            if tenant is None:
                raise TenantNotFoundError(slug)
            tenant.disabled = disabled
            await uow.tenants.update(tenant)
            await uow.commit()
        return tenant
