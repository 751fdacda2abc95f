"""Hot read paths that need no transaction: one statement, one round trip."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.accounts import SqlAccountRepository
from identity.adapters.sqlalchemy.native import OneRowRead
from identity.application.ports import ActiveSessionReader
from identity.domain.accounts import Account

_ACCOUNT_FOR_SESSION = (
    select(t.users)
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
    """Runs on every bearer-authenticated request, so it is kept lean.

    On Postgres the statement, compiled once by SQLAlchemy, goes straight to
    the pooled asyncpg connection (asyncpg prepares and caches it, and runs it
    outside any transaction since SQLAlchemy began none): SQLAlchemy's
    per-execution machinery was a third of an ``/auth/me``. Elsewhere it runs
    through SQLAlchemy on an AUTOCOMMIT connection.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._read = OneRowRead(
            engine,
            _ACCOUNT_FOR_SESSION,
            datetimes=("verified_at", "created_at", "updated_at", "last_login_at"),
        )

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        row = await self._read(
            {"session_id": session_id, "tenant_id": tenant_id, "account_id": account_id, "now": now}
        )
        return SqlAccountRepository._to_entity(row) if row is not None else None
