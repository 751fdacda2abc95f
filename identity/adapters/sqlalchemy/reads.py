"""Hot read paths that need no transaction: one statement, one round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.repositories import SqlAccountRepository
from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.application.ports import ActiveSessionReader
from identity.domain.accounts import Account
from identity.domain.errors import StorageUnavailableError

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
        self._engine = engine
        self._native: tuple[str, list[str], dict[str, Any]] | None = None
        if engine.dialect.name == "postgresql" and engine.dialect.driver == "asyncpg":
            compiled = _ACCOUNT_FOR_SESSION.compile(dialect=engine.dialect)
            assert compiled.positiontup is not None
            self._native = (compiled.string, list(compiled.positiontup), dict(compiled.params))

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        params: dict[str, Any] = {
            "session_id": session_id,
            "tenant_id": tenant_id,
            "account_id": account_id,
            "now": now,
        }
        async with self._engine.connect() as connection:
            if self._native is not None:
                sql, order, constants = self._native
                raw = await connection.get_raw_connection()
                values = [params[name] if name in params else constants[name] for name in order]
                try:
                    record = await raw.driver_connection.fetchrow(sql, *values)  # type: ignore[union-attr]
                except Exception as error:
                    if not is_unavailable(error):
                        raise
                    # Outside SQLAlchemy nobody else notices a dead connection:
                    # drop it from the pool, and answer 503 like every other path.
                    await connection.invalidate()
                    raise StorageUnavailableError(type(error).__name__) from error
                if record is None:
                    return None
                row: Any = SimpleNamespace(**dict(record))
                for name in ("verified_at", "created_at", "updated_at", "last_login_at"):
                    value = getattr(row, name)
                    if value is not None:
                        setattr(row, name, value.astimezone(UTC))
            else:
                # A single read needs no transaction: no BEGIN/ROLLBACK round trips.
                connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
                row = (await connection.execute(_ACCOUNT_FOR_SESSION, params)).first()
        return SqlAccountRepository._to_entity(row) if row else None
