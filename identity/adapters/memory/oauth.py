"""The authorization server's repositories in memory: clients, codes, client sessions,
consents (the semantics of ``sqlalchemy.oauth``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

from identity.adapters.memory.store import (
    MemoryIntegrityError,
    MemoryStore,
    _round_trip,
    _Table,
    _Transaction,
)
from identity.application.ports import (
    AuthorizationCodeRepository,
    ClientSessionRepository,
    ConsentRepository,
    OAuthClientReader,
    OAuthClientRepository,
    Position,
)
from identity.domain.oauth import (
    CODE_REPLAY_WINDOW,
    AuthorizationCode,
    Client,
    ClientSession,
    Consent,
    EndedClientSession,
)
from identity.domain.sessions import Session


class MemoryOAuthClientRepository(OAuthClientRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, Client] = _Table(transaction, "oauth_clients", Client)
        self._tx = transaction

    @_round_trip
    async def get(self, client_id: str) -> Client | None:
        return self._t.get(client_id)

    @_round_trip
    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Client]:
        clients = [
            client
            for _, client in self._t.rows()
            if client.tenant_id == tenant_id
            and (
                after is None
                or (client.created_at, client.client_id) > (after.created_at, str(after.id))
            )
        ]
        return sorted(clients, key=lambda client: (client.created_at, client.client_id))[:limit]

    @_round_trip
    async def add(self, client: Client) -> None:
        await self._t.lock(client.client_id)
        if self._t.get(client.client_id) is not None:
            raise MemoryIntegrityError(f"client {client.client_id} exists")
        self._t.put(client.client_id, client)

    @_round_trip
    async def update(self, client: Client) -> None:
        await self._t.lock(client.client_id)
        if self._t.get(client.client_id) is not None:
            self._t.put(client.client_id, client)

    @_round_trip
    async def delete(self, tenant_id: UUID, client_id: str) -> bool:
        await self._t.lock(client_id)
        client = self._t.get(client_id)
        if client is None or client.tenant_id != tenant_id:
            return False
        self._t.delete(client_id)
        # ON DELETE CASCADE of the SQL schema.
        codes: _Table[str, AuthorizationCode] = _Table(self._tx, "oauth_codes", AuthorizationCode)
        await codes.delete_where(lambda code: code.client_id == client_id)
        links: _Table[UUID, ClientSession] = _Table(
            self._tx, "oauth_client_sessions", ClientSession
        )
        await links.delete_where(lambda link: link.client_id == client_id)
        consents: _Table[tuple[UUID, UUID, str], Consent] = _Table(
            self._tx, "oauth_consents", Consent
        )
        await consents.delete_where(lambda consent: consent.client_id == client_id)
        return True


class MemoryAuthorizationCodeRepository(AuthorizationCodeRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, AuthorizationCode] = _Table(
            transaction, "oauth_codes", AuthorizationCode
        )

    @_round_trip
    async def add(self, code: AuthorizationCode) -> None:
        await self._t.lock(code.digest)
        if self._t.get(code.digest) is not None:
            raise MemoryIntegrityError("code exists")
        self._t.put(code.digest, code)

    @_round_trip
    async def consume(
        self, digest: str, now: datetime, session_id: UUID
    ) -> tuple[AuthorizationCode | None, bool]:
        await self._t.lock(digest)
        code = self._t.get(digest)
        if code is None:
            return None, False
        if code.consumed_at is not None:
            return code, False
        code.consumed_at = now
        code.session_id = session_id
        self._t.put(digest, code)
        return code, True

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda code: code.expires_at < now - CODE_REPLAY_WINDOW)


class MemoryClientSessionRepository(ClientSessionRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, ClientSession] = _Table(
            transaction, "oauth_client_sessions", ClientSession
        )
        self._sessions: _Table[UUID, Session] = _Table(transaction, "sessions", Session)
        self._clients: _Table[str, Client] = _Table(transaction, "oauth_clients", Client)

    @_round_trip
    async def claim_ended(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[EndedClientSession]:
        found: list[EndedClientSession] = []
        for key, link in sorted(self._t.rows(), key=lambda row: row[1].created_at):
            if len(found) >= limit:
                break
            session = self._sessions.get(key)
            ended = session is None or not session.is_active(now)
            due = link.logout_next_at is None or link.logout_next_at <= now
            if not ended or not due or not self._t.try_lock(key):
                continue
            link.logout_attempts += 1
            link.logout_next_at = now + lease
            self._t.put(key, link)
            client = self._clients.get(link.client_id)
            found.append(
                EndedClientSession(
                    link,
                    client.backchannel_logout_uri if client else None,
                    client.id_token_signed_response_alg if client else "RS256",
                )
            )
        return found

    @_round_trip
    async def retry_at(self, session_id: UUID, when: datetime) -> None:
        await self._t.lock(session_id)
        link = self._t.get(session_id)
        if link is not None:
            link.logout_next_at = when
            self._t.put(session_id, link)

    @_round_trip
    async def forget(self, session_ids: list[UUID]) -> None:
        for session_id in session_ids:
            await self._t.lock(session_id)
            self._t.delete(session_id)

    @_round_trip
    async def add(self, link: ClientSession) -> None:
        await self._t.lock(link.session_id)
        self._t.put(link.session_id, link)

    @_round_trip
    async def get(self, tenant_id: UUID, session_id: UUID) -> ClientSession | None:
        link = self._t.get(session_id)
        return link if link is not None and link.tenant_id == tenant_id else None

    @_round_trip
    async def list_for_user(
        self, tenant_id: UUID, user_id: UUID, client_id: str | None = None
    ) -> list[ClientSession]:
        links = [
            link
            for _, link in self._t.rows()
            if link.tenant_id == tenant_id
            and link.user_id == user_id
            and (client_id is None or link.client_id == client_id)
        ]
        return sorted(links, key=lambda link: (link.created_at, link.session_id))

    @_round_trip
    async def list_for_client(self, tenant_id: UUID, client_id: str) -> list[ClientSession]:
        links = [
            link
            for _, link in self._t.rows()
            if link.tenant_id == tenant_id and link.client_id == client_id
        ]
        return sorted(links, key=lambda link: (link.created_at, link.session_id))

    @_round_trip
    async def list_for_browser_session(
        self, tenant_id: UUID, browser_session_id: UUID
    ) -> list[ClientSession]:
        links = [
            link
            for _, link in self._t.rows()
            if link.tenant_id == tenant_id and link.browser_session_id == browser_session_id
        ]
        return sorted(links, key=lambda link: (link.created_at, link.session_id))


class MemoryConsentRepository(ConsentRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[tuple[UUID, UUID, str], Consent] = _Table(
            transaction, "oauth_consents", Consent
        )

    @_round_trip
    async def get(self, tenant_id: UUID, user_id: UUID, client_id: str) -> Consent | None:
        return self._t.get((tenant_id, user_id, client_id))

    @_round_trip
    async def put(self, consent: Consent) -> None:
        key = (consent.tenant_id, consent.user_id, consent.client_id)
        await self._t.lock(key)
        self._t.put(key, consent)

    @_round_trip
    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[Consent]:
        consents = [
            consent
            for _, consent in self._t.rows()
            if consent.tenant_id == tenant_id and consent.user_id == user_id
        ]
        return sorted(consents, key=lambda consent: (consent.granted_at, consent.client_id))

    @_round_trip
    async def delete(self, tenant_id: UUID, user_id: UUID, client_id: str) -> bool:
        key = (tenant_id, user_id, client_id)
        await self._t.lock(key)
        if self._t.get(key) is None:
            return False
        self._t.delete(key)
        return True


class MemoryOAuthClientReader(OAuthClientReader):
    """The client read of the token endpoint over a ``MemoryStore``: committed state only."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def get(self, client_id: str) -> Client | None:
        transaction = _Transaction(self._store)
        try:
            return await MemoryOAuthClientRepository(transaction).get(client_id)
        finally:
            transaction.end(keep=False)
