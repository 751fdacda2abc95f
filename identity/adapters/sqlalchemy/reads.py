"""Hot read paths that need no transaction: one statement, one round trip."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.repositories import _GOOGLE_LINKED, SqlAccountRepository
from identity.application.ports import ActiveSessionReader
from identity.domain.accounts import Account

# Built once: SQLAlchemy memoises the cache key of a statement object.
_ACCOUNT_FOR_SESSION = (
    select(t.users, _GOOGLE_LINKED)
    .join(
        t.sessions,
        and_(t.sessions.c.user_id == t.users.c.id, t.sessions.c.tenant_id == t.users.c.tenant_id),
    )
    .where(
        t.sessions.c.id == bindparam("session_id"),
        t.sessions.c.tenant_id == bindparam("tenant_id"),
        t.users.c.id == bindparam("account_id"),
        t.sessions.c.revoked_at.is_(None),
        t.sessions.c.expires_at > bindparam("now"),
        t.users.c.is_active.is_(True),
    )
)


class SqlActiveSessionReader(ActiveSessionReader):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        params = {
            "session_id": session_id,
            "tenant_id": tenant_id,
            "account_id": account_id,
            "now": now,
        }
        async with self._engine.connect() as connection:
            # A single read needs no transaction: no BEGIN/ROLLBACK round trips.
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            row = (await connection.execute(_ACCOUNT_FOR_SESSION, params)).first()
        return SqlAccountRepository._to_entity(row) if row else None
