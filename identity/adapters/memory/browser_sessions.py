"""In-memory browser sessions, with the SQL adapter's semantics.

The SQL table cascades from ``sessions``; here a row whose session is gone is
invisible and dropped when met.
"""

from __future__ import annotations

from uuid import UUID

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import BrowserSessionRepository
from identity.domain.browser_sessions import BrowserSession
from identity.domain.sessions import Session


class MemoryBrowserSessionRepository(BrowserSessionRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, BrowserSession] = _Table(
            transaction, "browser_sessions", BrowserSession
        )
        self._sessions: _Table[UUID, Session] = _Table(transaction, "sessions", Session)

    def _live(self, row: BrowserSession) -> bool:
        return self._sessions.get(row.session_id) is not None

    @_round_trip
    async def add(self, browser: BrowserSession) -> None:
        await self._t.lock(browser.key_digest)
        self._t.put(browser.key_digest, browser)

    @_round_trip
    async def get(self, tenant_id: UUID, key_digest: str) -> BrowserSession | None:
        row = self._t.get(key_digest)
        if row is None or row.tenant_id != tenant_id or not self._live(row):
            return None
        return row

    @_round_trip
    async def session_ids_for_account(self, tenant_id: UUID, user_id: UUID) -> set[UUID]:
        return {
            row.session_id
            for _, row in self._t.rows()
            if row.tenant_id == tenant_id and row.user_id == user_id and self._live(row)
        }

    @_round_trip
    async def delete(self, tenant_id: UUID, key_digest: str) -> bool:
        row = self._t.get(key_digest)
        if row is None or row.tenant_id != tenant_id:
            return False
        await self._t.lock(key_digest)
        self._t.delete(key_digest)
        return True
