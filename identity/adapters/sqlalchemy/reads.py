"""Hot paths that need no transaction: one statement, one round trip each."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import and_, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.accounts import SqlAccountRepository
from identity.adapters.sqlalchemy.native import OneRowRead, RowsRead
from identity.adapters.sqlalchemy.organizations import SESSION_CLAIMS, claims_of_rows
from identity.adapters.sqlalchemy.sessions import _ROTATE_SESSION, SqlSessionRepository
from identity.application.ports import ActiveSessionReader
from identity.domain.accounts import Account
from identity.domain.organizations import OrgClaims
from identity.domain.sessions import Session

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

# Both rows in one, their columns told apart by a prefix (both tables have id,
# tenant_id, created_at); every column, so a column added later comes along.
_SESSION_WITH_ACCOUNT = (
    select(
        *(column.label(f"s_{column.name}") for column in t.sessions.c),
        *(column.label(f"u_{column.name}") for column in t.users.c),
        # Whether the session acts in an organization: refresh reads the claims
        # only then (section 19), so other refreshes pay no second statement.
        t.session_organizations.c.organization_id.label("o_organization_id"),
    )
    .join_from(
        t.sessions,
        t.users,
        and_(t.sessions.c.user_id == t.users.c.id, t.sessions.c.tenant_id == t.users.c.tenant_id),
    )
    .outerjoin(t.session_organizations, t.session_organizations.c.session_id == t.sessions.c.id)
    .where(
        t.sessions.c.id == bindparam("session_id"),
        t.sessions.c.tenant_id == bindparam("tenant_id"),
        t.users.c.id == bindparam("account_id"),
    )
)
_SESSION_DATETIMES = tuple(f"s_{c.name}" for c in t.sessions.c if c.name.endswith("_at")) + tuple(
    f"u_{c.name}" for c in t.users.c if c.name.endswith("_at")
)
# The repository's conditional rotation, told whether it matched by a returned row.
_ROTATE_RETURNING = _ROTATE_SESSION.returning(t.sessions.c.id)


def _split(row: Any, prefix: str) -> SimpleNamespace:
    return SimpleNamespace(
        **{
            name[len(prefix) :]: value
            for name, value in vars(row).items()
            if name.startswith(prefix)
        }
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
        self._read = OneRowRead(
            engine,
            _ACCOUNT_FOR_SESSION,
            datetimes=("verified_at", "created_at", "updated_at", "last_login_at"),
        )
        self._session_with_account = OneRowRead(
            engine, _SESSION_WITH_ACCOUNT, datetimes=_SESSION_DATETIMES
        )
        self._rotate = OneRowRead(engine, _ROTATE_RETURNING)
        self._session_claims = RowsRead(engine, SESSION_CLAIMS, json_columns=("permissions",))

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        row = await self._read(
            {"session_id": session_id, "tenant_id": tenant_id, "account_id": account_id, "now": now}
        )
        return SqlAccountRepository._to_entity(row) if row is not None else None

    async def session_with_account(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID
    ) -> tuple[Session, Account, bool] | None:
        row = await self._session_with_account(
            {"session_id": session_id, "tenant_id": tenant_id, "account_id": account_id}
        )
        if row is None:
            return None
        if not isinstance(row, SimpleNamespace):
            row = SimpleNamespace(**row._asdict())
        session = SqlSessionRepository._to_entity(_split(row, "s_"))
        in_organization = row.o_organization_id is not None
        return session, SqlAccountRepository._to_entity(_split(row, "u_")), in_organization

    async def rotate(self, session: Session, presented_jti: str) -> bool:
        row = await self._rotate(
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
            }
        )
        return row is not None

    async def organization_claims(
        self, tenant_id: UUID, session_id: UUID, user_id: UUID
    ) -> OrgClaims | None:
        # Section 19: one statement outside any transaction, on the hot-path pool.
        rows = await self._session_claims(
            {"session_id": session_id, "tenant_id": tenant_id, "user_id": user_id}
        )
        return claims_of_rows(rows)
