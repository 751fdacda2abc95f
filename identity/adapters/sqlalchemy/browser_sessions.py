"""The hosted pages' browser sessions over SQLAlchemy Core. Never commits."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import BrowserSessionRepository
from identity.domain.browser_sessions import BrowserSession


class SqlBrowserSessionRepository(BrowserSessionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, browser: BrowserSession) -> None:
        await self._c.execute(
            insert(t.browser_sessions).values(
                key_digest=browser.key_digest,
                tenant_id=browser.tenant_id,
                session_id=browser.session_id,
                user_id=browser.user_id,
                created_at=browser.created_at,
            )
        )

    async def get(self, tenant_id: UUID, key_digest: str) -> BrowserSession | None:
        c = t.browser_sessions.c
        row = (
            await self._c.execute(
                select(t.browser_sessions).where(
                    c.key_digest == key_digest, c.tenant_id == tenant_id
                )
            )
        ).first()
        if row is None:
            return None
        return BrowserSession(
            key_digest=row.key_digest,
            tenant_id=row.tenant_id,
            session_id=row.session_id,
            user_id=row.user_id,
            created_at=row.created_at,
        )

    async def session_ids_for_account(self, tenant_id: UUID, user_id: UUID) -> set[UUID]:
        c = t.browser_sessions.c
        rows = await self._c.execute(
            select(c.session_id).where(c.tenant_id == tenant_id, c.user_id == user_id)
        )
        return {row.session_id for row in rows}

    async def delete(self, tenant_id: UUID, key_digest: str) -> bool:
        c = t.browser_sessions.c
        result = await self._c.execute(
            delete(t.browser_sessions).where(c.key_digest == key_digest, c.tenant_id == tenant_id)
        )
        return bool(result.rowcount)
