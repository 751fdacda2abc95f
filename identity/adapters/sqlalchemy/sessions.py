"""The session repository over SQLAlchemy Core."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.types import UtcDateTime
from identity.application.ports import SessionRepository
from identity.domain.sessions import Session

_SESSION_BY_ID = select(t.sessions).where(
    t.sessions.c.tenant_id == bindparam("tenant_id"), t.sessions.c.id == bindparam("session_id")
)
_ROTATE_SESSION = (
    update(t.sessions)
    .where(
        t.sessions.c.id == bindparam("b_id"),
        t.sessions.c.tenant_id == bindparam("b_tenant_id"),
        t.sessions.c.refresh_jti == bindparam("b_presented"),
        t.sessions.c.revoked_at.is_(None),
    )
    .values(
        refresh_jti=bindparam("b_refresh_jti"),
        previous_refresh_jti=bindparam("b_previous"),
        rotated_at=bindparam("b_rotated_at", type_=UtcDateTime()),
        refresh_issued_at=bindparam("b_issued_at", type_=UtcDateTime()),
        last_used_at=bindparam("b_last_used_at", type_=UtcDateTime()),
        expires_at=bindparam("b_expires_at", type_=UtcDateTime()),
    )
)


class SqlSessionRepository(SessionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    @staticmethod
    def _to_entity(row: Any) -> Session:
        return Session(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            refresh_jti=row.refresh_jti,
            refresh_issued_at=row.refresh_issued_at,
            expires_at=row.expires_at,
            user_agent=row.user_agent,
            ip=row.ip,
            previous_refresh_jti=row.previous_refresh_jti,
            rotated_at=row.rotated_at,
            revoked_at=row.revoked_at,
            revoked_reason=row.revoked_reason,
            aal=row.aal,
            amr=tuple(row.amr.split(",")) if row.amr else (),
        )

    async def add(self, session: Session) -> bool:
        values = {name: getattr(session, name) for name in _SESSION_COLUMNS}
        values["amr"] = ",".join(session.amr)
        params = {f"s_{name}": value for name, value in values.items()}
        if self._c.dialect.name == "postgresql":
            # One statement: the UPDATE locks the account row (a concurrent delete
            # or disable waits, or has won and the UPDATE matches nothing), records
            # the login, and the INSERT takes its values only from a matched row.
            result = await self._c.execute(_ADD_SESSION_FOR_ACTIVE_ACCOUNT, params)
            return result.rowcount == 1
        # SQLite has no data-modifying CTEs; its transactions are serialised anyway.
        touched = await self._c.execute(_TOUCH_LOGIN, params)
        if touched.rowcount != 1:
            return False
        await self._c.execute(insert(t.sessions).values(**values))
        return True

    async def get(self, tenant_id: UUID, session_id: UUID) -> Session | None:
        params = {"tenant_id": tenant_id, "session_id": session_id}
        row = (await self._c.execute(_SESSION_BY_ID, params)).first()
        return self._to_entity(row) if row else None

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        result = await self._c.execute(
            _ROTATE_SESSION,
            {
                "b_id": session.id,
                "b_tenant_id": session.tenant_id,
                "b_presented": presented_jti,
                "b_refresh_jti": session.refresh_jti,
                "b_previous": session.previous_refresh_jti,
                "b_rotated_at": session.rotated_at,
                "b_issued_at": session.refresh_issued_at,
                "b_last_used_at": session.last_used_at,
                "b_expires_at": session.expires_at,
            },
        )
        return result.rowcount == 1

    async def revoke(self, tenant_id: UUID, session_id: UUID, now: datetime, reason: str) -> bool:
        c = t.sessions.c
        result = await self._c.execute(
            update(t.sessions)
            .where(c.tenant_id == tenant_id, c.id == session_id, c.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount == 1

    async def set_assurance(self, session: Session) -> bool:
        c = t.sessions.c
        result = await self._c.execute(
            update(t.sessions)
            .where(c.tenant_id == session.tenant_id, c.id == session.id, c.revoked_at.is_(None))
            .values(aal=session.aal, amr=",".join(session.amr))
        )
        return result.rowcount == 1

    async def revoke_all_for_account(
        self,
        tenant_id: UUID,
        account_id: UUID,
        now: datetime,
        reason: str,
        *,
        keep: UUID | None = None,
    ) -> int:
        c = t.sessions.c
        conditions = [
            c.tenant_id == tenant_id,
            c.user_id == account_id,
            c.revoked_at.is_(None),
            c.expires_at > now,
        ]
        if keep is not None:
            conditions.append(c.id != keep)
        result = await self._c.execute(
            update(t.sessions)
            .where(and_(*conditions))
            .values(revoked_at=now, revoked_reason=reason)
        )
        return result.rowcount

    async def list_active_for_account(
        self, tenant_id: UUID, account_id: UUID, now: datetime
    ) -> list[Session]:
        c = t.sessions.c
        rows = await self._c.execute(
            select(t.sessions)
            .where(
                c.tenant_id == tenant_id,
                c.user_id == account_id,
                c.revoked_at.is_(None),
                c.expires_at > now,
            )
            .order_by(c.created_at)
        )
        return [self._to_entity(row) for row in rows]

    async def delete_expired(self, now: datetime, *, revoked_before: datetime) -> int:
        c = t.sessions.c
        result = await self._c.execute(
            delete(t.sessions).where(or_(c.expires_at < now, c.revoked_at < revoked_before))
        )
        return result.rowcount


_SESSION_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "created_at",
    "last_used_at",
    "refresh_jti",
    "refresh_issued_at",
    "expires_at",
    "user_agent",
    "ip",
    "previous_refresh_jti",
    "rotated_at",
    "revoked_at",
    "revoked_reason",
    "aal",
    "amr",
)


# Parameters are prefixed: a bindparam named like a column is reserved by SQLAlchemy.
_TOUCH_LOGIN = (
    update(t.users)
    .where(
        t.users.c.tenant_id == bindparam("s_tenant_id"),
        t.users.c.id == bindparam("s_user_id"),
        t.users.c.is_active.is_(True),
    )
    .values(last_login_at=bindparam("s_created_at", type_=UtcDateTime()))
)
_TOUCHED = _TOUCH_LOGIN.returning(t.users.c.id).cte("touched")
_ADD_SESSION_FOR_ACTIVE_ACCOUNT = insert(t.sessions).from_select(
    list(_SESSION_COLUMNS),
    select(
        *(
            _TOUCHED.c.id
            if name == "user_id"
            else bindparam(f"s_{name}", type_=t.sessions.c[name].type).label(name)
            for name in _SESSION_COLUMNS
        )
    ).select_from(_TOUCHED),
)
