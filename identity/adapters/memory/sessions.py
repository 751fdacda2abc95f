"""The in-memory session repository."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import SessionRepository
from identity.domain.accounts import Account
from identity.domain.sessions import Session


class MemorySessionRepository(SessionRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, Session] = _Table(transaction, "sessions", Session)
        self._accounts: _Table[UUID, Account] = _Table(transaction, "accounts", Account)

    @_round_trip
    async def add(self, session: Session) -> bool:
        # As the SQL UPDATE of the account row: a concurrent delete or disable waits.
        await self._accounts.lock(session.user_id)
        account = self._accounts.get(session.user_id)
        if account is None or account.tenant_id != session.tenant_id or not account.is_active:
            return False
        await self._t.lock(session.id)
        if self._t.get(session.id) is not None:
            raise MemoryIntegrityError(f"session {session.id} exists")
        account.last_login_at = session.created_at
        self._accounts.put(account.id, account)
        self._t.put(session.id, session)
        return True

    @_round_trip
    async def get(self, tenant_id: UUID, session_id: UUID) -> Session | None:
        session = self._t.get(session_id)
        return session if session is not None and session.tenant_id == tenant_id else None

    @_round_trip
    async def set_assurance(self, session: Session) -> bool:
        await self._t.lock(session.id)
        current = self._t.get(session.id)
        if current is None or current.tenant_id != session.tenant_id or current.revoked_at:
            return False
        current.aal = session.aal
        current.amr = session.amr
        self._t.put(session.id, current)
        return True

    @_round_trip
    async def rotate(self, session: Session, presented_jti: str) -> bool:
        await self._t.lock(session.id)
        current = self._t.get(session.id)
        if (
            current is None
            or current.tenant_id != session.tenant_id
            or current.refresh_jti != presented_jti
            or current.revoked_at is not None
        ):
            return False
        # Only the rotation columns, as the SQL update: a concurrent revoke is not undone.
        current.refresh_jti = session.refresh_jti
        current.previous_refresh_jti = session.previous_refresh_jti
        current.rotated_at = session.rotated_at
        current.refresh_issued_at = session.refresh_issued_at
        current.last_used_at = session.last_used_at
        current.expires_at = session.expires_at
        self._t.put(session.id, current)
        return True

    @_round_trip
    async def revoke(self, tenant_id: UUID, session_id: UUID, now: datetime, reason: str) -> bool:
        await self._t.lock(session_id)
        current = self._t.get(session_id)
        if current is None or current.tenant_id != tenant_id or current.revoked_at is not None:
            return False
        current.revoked_at = now
        current.revoked_reason = reason
        self._t.put(session_id, current)
        return True

    @_round_trip
    async def revoke_all_for_account(
        self,
        tenant_id: UUID,
        account_id: UUID,
        now: datetime,
        reason: str,
        *,
        keep: UUID | None = None,
    ) -> int:
        def matches(session: Session) -> bool:
            return (
                session.tenant_id == tenant_id
                and session.user_id == account_id
                and session.revoked_at is None
                and session.expires_at > now
                and session.id != keep
            )

        def end(session: Session) -> None:
            session.revoked_at = now
            session.revoked_reason = reason

        return await self._t.update_where(matches, end)

    @_round_trip
    async def list_active_for_account(
        self, tenant_id: UUID, account_id: UUID, now: datetime
    ) -> list[Session]:
        sessions = [
            session
            for _, session in self._t.rows()
            if session.tenant_id == tenant_id
            and session.user_id == account_id
            and session.revoked_at is None
            and session.expires_at > now
        ]
        return sorted(sessions, key=lambda session: session.created_at)

    @_round_trip
    async def delete_expired(self, now: datetime, *, revoked_before: datetime) -> int:
        return await self._t.delete_where(
            lambda row: (
                row.expires_at < now
                or (row.revoked_at is not None and row.revoked_at < revoked_before)
            )
        )
