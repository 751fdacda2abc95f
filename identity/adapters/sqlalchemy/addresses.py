"""How a sealed queue (outbox, code requests) finds and deletes the rows of one address."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Table, delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer


def address_digest(sealer: Sealer, tenant_id: UUID, email_key: str) -> str:
    """How a sealed queue finds the rows of one address (see migration 0014)."""
    return sealer.lookup_digest(f"{tenant_id}|{email_key}")


async def delete_for_address(
    connection: AsyncConnection, table: Table, sealer: Sealer, tenant_id: UUID, email_key: str
) -> int:
    """Rows a worker holds at this moment are skipped, not waited for: the worker
    may in turn wait for the account rows the erasing transaction holds."""
    digest = address_digest(sealer, tenant_id, email_key)
    rows = select(table.c.id).where(
        table.c.tenant_id == tenant_id, table.c.address_digest == digest
    )
    if connection.dialect.name == "postgresql":
        rows = rows.with_for_update(skip_locked=True)
    result = await connection.execute(delete(table).where(table.c.id.in_(rows.scalar_subquery())))
    return int(result.rowcount)
