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
from identity.adapters.sqlalchemy.organizations import claims_of_rows
from identity.adapters.sqlalchemy.sessions import _ROTATE_SESSION, SqlSessionRepository
from identity.application.ports import ActiveSessionReader
from identity.domain.accounts import Account
from identity.domain.organizations import OrgClaims
from identity.domain.sessions import Session

_O, _M, _MR, _R, _SO = (
    t.organizations,
    t.memberships,
    t.membership_roles,
    t.org_roles,
    t.session_organizations,
)

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
# With them, the session's organization claims as they are now (section 19): one
# row per role of the membership (a removed member, or a session in no
# organization, gets one row with NULLs there), so refresh stays one read.
_SESSION_WITH_ACCOUNT = (
    select(
        *(column.label(f"s_{column.name}") for column in t.sessions.c),
        *(column.label(f"u_{column.name}") for column in t.users.c),
        _O.c.id.label("o_id"),
        _O.c.slug.label("o_slug"),
        _MR.c.role.label("o_role"),
        _R.c.permissions.label("o_permissions"),
    )
    .join_from(
        t.sessions,
        t.users,
        and_(t.sessions.c.user_id == t.users.c.id, t.sessions.c.tenant_id == t.users.c.tenant_id),
    )
    .outerjoin(
        _SO, and_(_SO.c.session_id == t.sessions.c.id, _SO.c.tenant_id == t.sessions.c.tenant_id)
    )
    .outerjoin(
        _O.join(_M, _M.c.organization_id == _O.c.id),
        and_(
            _O.c.id == _SO.c.organization_id,
            _O.c.tenant_id == _SO.c.tenant_id,
            _M.c.user_id == _SO.c.user_id,
            _M.c.user_id == t.sessions.c.user_id,
        ),
    )
    .outerjoin(_MR, _MR.c.membership_id == _M.c.id)
    .outerjoin(_R, and_(_R.c.tenant_id == _M.c.tenant_id, _R.c.name == _MR.c.role))
    .where(
        t.sessions.c.id == bindparam("session_id"),
        t.sessions.c.tenant_id == bindparam("tenant_id"),
        t.users.c.id == bindparam("account_id"),
    )
)
# A hosted page's cookie: its browser session row joined to the session and the
# account it names (every column of both, prefixed as above).
_BROWSER_SESSION = (
    select(
        *(column.label(f"s_{column.name}") for column in t.sessions.c),
        *(column.label(f"u_{column.name}") for column in t.users.c),
    )
    .select_from(t.browser_sessions)
    .join(
        t.sessions,
        and_(
            t.sessions.c.id == t.browser_sessions.c.session_id,
            t.sessions.c.tenant_id == t.browser_sessions.c.tenant_id,
        ),
    )
    .join(
        t.users,
        and_(
            t.users.c.id == t.browser_sessions.c.user_id,
            t.users.c.tenant_id == t.browser_sessions.c.tenant_id,
        ),
    )
    .where(
        t.browser_sessions.c.key_digest == bindparam("key_digest"),
        t.browser_sessions.c.tenant_id == bindparam("tenant_id"),
    )
)
_SESSION_DATETIMES = tuple(f"s_{c.name}" for c in t.sessions.c if c.name.endswith("_at")) + tuple(
    f"u_{c.name}" for c in t.users.c if c.name.endswith("_at")
)
# The repository's conditional rotation, told whether it matched by a returned row.
_ROTATE_RETURNING = _ROTATE_SESSION.returning(t.sessions.c.id)


def _split(values: dict[str, Any], prefix: str) -> SimpleNamespace:
    return SimpleNamespace(
        **{name[len(prefix) :]: value for name, value in values.items() if name.startswith(prefix)}
    )


def _session_and_account(row: Any) -> tuple[Session, Account]:
    """The two entities of a row whose columns are prefixed ``s_`` and ``u_`` (a native
    read's namespace, or a SQLAlchemy row elsewhere)."""
    values = vars(row) if isinstance(row, SimpleNamespace) else row._asdict()
    return (
        SqlSessionRepository._to_entity(_split(values, "s_")),
        SqlAccountRepository._to_entity(_split(values, "u_")),
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
        self._session_with_account = RowsRead(
            engine,
            _SESSION_WITH_ACCOUNT,
            json_columns=("o_permissions",),
            datetimes=_SESSION_DATETIMES,
        )
        self._rotate = OneRowRead(engine, _ROTATE_RETURNING)
        self._browser_session = OneRowRead(engine, _BROWSER_SESSION, datetimes=_SESSION_DATETIMES)

    async def account_for_session(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID, now: datetime
    ) -> Account | None:
        row = await self._read(
            {"session_id": session_id, "tenant_id": tenant_id, "account_id": account_id, "now": now}
        )
        return SqlAccountRepository._to_entity(row) if row is not None else None

    async def session_with_account(
        self, tenant_id: UUID, session_id: UUID, account_id: UUID
    ) -> tuple[Session, Account, OrgClaims | None] | None:
        rows = await self._session_with_account(
            {"session_id": session_id, "tenant_id": tenant_id, "account_id": account_id}
        )
        if not rows:
            return None
        session, account = _session_and_account(rows[0])
        claims = None
        if rows[0].o_id is not None:
            claims = claims_of_rows(
                [
                    SimpleNamespace(
                        id=r.o_id, slug=r.o_slug, role=r.o_role, permissions=r.o_permissions
                    )
                    for r in rows
                ]
            )
        return session, account, claims

    async def browser_session(
        self, tenant_id: UUID, key_digest: str
    ) -> tuple[Session, Account] | None:
        row = await self._browser_session({"tenant_id": tenant_id, "key_digest": key_digest})
        return None if row is None else _session_and_account(row)

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
