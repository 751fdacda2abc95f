"""The tenant repository over SQLAlchemy Core; provider client secrets are stored sealed."""

from __future__ import annotations

import json
import logging
from typing import Any
from uuid import UUID

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.integrity import constraint_name as _constraint_name
from identity.application.policy import is_secret_setting
from identity.application.ports import TenantRepository
from identity.domain.errors import TenantAlreadyExistsError
from identity.domain.tenants import Tenant

log = logging.getLogger("identity.storage")

# A sealed setting value: the prefix tells it from a value stored in clear by an
# earlier version (read as it is, sealed at the tenant's next write).
SEALED_SETTING_PREFIX = "sealed:v1:"


class SqlTenantRepository(TenantRepository):
    """Tenants; provider client secrets among the settings are stored sealed."""

    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    def _to_entity(self, row: Any) -> Tenant:
        return Tenant(
            id=row.id,
            slug=row.slug,
            name=row.name,
            created_at=row.created_at,
            disabled=row.disabled,
            settings=self._unsealed(row.slug, dict(row.settings or {})),
        )

    def _unsealed(self, slug: str, settings: dict[str, Any]) -> dict[str, Any]:
        for key, value in list(settings.items()):
            if not (isinstance(value, str) and value.startswith(SEALED_SETTING_PREFIX)):
                continue
            try:
                sealed = value.removeprefix(SEALED_SETTING_PREFIX).encode()
                settings[key] = self._sealer.unseal(sealed).decode()
            except UnsealError:
                # Another secret key: the provider reads as not configured for this
                # tenant (its sign-in answers so) rather than failing every request.
                log.warning("tenant setting cannot be unsealed", extra={"tenant": slug, "key": key})
                del settings[key]
        return settings

    def _sealed(self, settings: dict[str, Any]) -> dict[str, Any]:
        return {
            key: (
                SEALED_SETTING_PREFIX + self._sealer.seal(value.encode()).decode()
                if is_secret_setting(key) and isinstance(value, str)
                else value
            )
            for key, value in settings.items()
        }

    async def get_by_slug(self, slug: str) -> Tenant | None:
        row = (await self._c.execute(select(t.tenants).where(t.tenants.c.slug == slug))).first()
        return self._to_entity(row) if row else None

    async def get(self, tenant_id: UUID) -> Tenant | None:
        row = (await self._c.execute(select(t.tenants).where(t.tenants.c.id == tenant_id))).first()
        return self._to_entity(row) if row else None

    async def list(self) -> list[Tenant]:
        rows = await self._c.execute(select(t.tenants).order_by(t.tenants.c.slug))
        return [self._to_entity(row) for row in rows]

    async def add(self, tenant: Tenant) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(insert(t.tenants).values(**self._values(tenant)))
        except IntegrityError as error:
            if "slug" in _constraint_name(error):  # uq_tenants_slug; SQLite names the column
                raise TenantAlreadyExistsError(tenant.slug) from None
            raise

    async def update(self, tenant: Tenant) -> None:
        await self._c.execute(
            update(t.tenants).where(t.tenants.c.id == tenant.id).values(**self._values(tenant))
        )

    def _values(self, tenant: Tenant) -> dict[str, Any]:
        return {
            "id": tenant.id,
            "slug": tenant.slug,
            "name": tenant.name,
            "created_at": tenant.created_at,
            "disabled": tenant.disabled,
            "settings": json.loads(json.dumps(self._sealed(tenant.settings))),
        }
