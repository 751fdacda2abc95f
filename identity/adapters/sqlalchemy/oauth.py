"""The authorization server's repositories over SQLAlchemy Core: clients, codes,
client sessions and consents."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.native import OneRowRead
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
    AuthMethod,
    AuthorizationCode,
    Client,
    ClientSession,
    ClientType,
    Consent,
    EndedClientSession,
    GrantType,
)

_CLIENTS = t.oauth_clients
_CODES = t.oauth_codes
_LINKS = t.oauth_client_sessions
_CONSENTS = t.oauth_consents


def _client_metadata(client: Client) -> dict[str, Any]:
    return {
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "grant_types": [grant.value for grant in client.grant_types],
        "allowed_scopes": list(client.allowed_scopes),
        "first_party": client.first_party,
        "token_endpoint_auth_method": client.token_endpoint_auth_method.value,
        "jwks_uri": client.jwks_uri,
        "jwks": client.jwks,
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "logo_url": client.logo_url,
        "dynamically_registered": client.dynamically_registered,
    }


def _client(row: Any) -> Client:
    # asyncpg's native read gives JSON as text.
    meta = json.loads(row.metadata) if isinstance(row.metadata, str) else dict(row.metadata)
    return Client(
        client_id=row.client_id,
        tenant_id=row.tenant_id,
        name=row.name,
        type=ClientType(row.type),
        redirect_uris=tuple(meta["redirect_uris"]),
        post_logout_redirect_uris=tuple(meta.get("post_logout_redirect_uris", ())),
        grant_types=tuple(GrantType(grant) for grant in meta["grant_types"]),
        allowed_scopes=tuple(meta["allowed_scopes"]),
        first_party=bool(meta.get("first_party", False)),
        token_endpoint_auth_method=AuthMethod(meta["token_endpoint_auth_method"]),
        jwks_uri=meta.get("jwks_uri"),
        jwks=meta.get("jwks"),
        backchannel_logout_uri=meta.get("backchannel_logout_uri"),
        id_token_signed_response_alg=meta.get("id_token_signed_response_alg", "RS256"),
        logo_url=meta.get("logo_url"),
        dynamically_registered=bool(meta.get("dynamically_registered", False)),
        secret_digest=row.secret_digest,
        created_at=row.created_at,
    )


_CLIENT_BY_ID = select(_CLIENTS).where(_CLIENTS.c.client_id == bindparam("client_id"))


class SqlOAuthClientReader(OAuthClientReader):
    """One statement, one round trip, no transaction: it runs on every token request."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._read = OneRowRead(engine, _CLIENT_BY_ID, datetimes=("created_at",))

    async def get(self, client_id: str) -> Client | None:
        row = await self._read({"client_id": client_id})
        return _client(row) if row is not None else None


class SqlOAuthClientRepository(OAuthClientRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def get(self, client_id: str) -> Client | None:
        row = (
            await self._c.execute(select(_CLIENTS).where(_CLIENTS.c.client_id == client_id))
        ).first()
        return _client(row) if row else None

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Client]:
        c = _CLIENTS.c
        query = select(_CLIENTS).where(c.tenant_id == tenant_id)
        if after is not None:
            # client ids are UUID strings: their text orders as the UUIDs do.
            query = query.where(
                tuple_(c.created_at, c.client_id) > tuple_(after.created_at, str(after.id))
            )
        rows = await self._c.execute(query.order_by(c.created_at, c.client_id).limit(limit))
        return [_client(row) for row in rows]

    async def add(self, client: Client) -> None:
        await self._c.execute(
            insert(_CLIENTS).values(
                client_id=client.client_id,
                tenant_id=client.tenant_id,
                name=client.name,
                type=client.type.value,
                metadata=_client_metadata(client),
                secret_digest=client.secret_digest,
                created_at=client.created_at,
            )
        )

    async def update(self, client: Client) -> None:
        await self._c.execute(
            update(_CLIENTS)
            .where(_CLIENTS.c.client_id == client.client_id)
            .values(
                name=client.name,
                type=client.type.value,
                metadata=_client_metadata(client),
                secret_digest=client.secret_digest,
            )
        )

    async def delete(self, tenant_id: UUID, client_id: str) -> bool:
        # Codes, consents and session links go with it (ON DELETE CASCADE); the
        # sessions themselves are ended by the use case first.
        result = await self._c.execute(
            delete(_CLIENTS).where(
                _CLIENTS.c.tenant_id == tenant_id, _CLIENTS.c.client_id == client_id
            )
        )
        return result.rowcount == 1


def _binding(code: AuthorizationCode) -> dict[str, Any]:
    return {
        "redirect_uri": code.redirect_uri,
        "code_challenge": code.code_challenge,
        "scopes": list(code.scopes),
        "audience": code.audience,
        "auth_time": code.auth_time.timestamp(),
        "aal": code.aal,
        "amr": list(code.amr),
        "nonce": code.nonce,
        "browser_session_id": str(code.browser_session_id) if code.browser_session_id else None,
    }


def _code(row: Any) -> AuthorizationCode:
    binding = dict(row.binding)
    browser = binding.get("browser_session_id")
    return AuthorizationCode(
        digest=row.digest,
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        redirect_uri=binding["redirect_uri"],
        code_challenge=binding["code_challenge"],
        scopes=tuple(binding["scopes"]),
        audience=binding["audience"],
        auth_time=datetime.fromtimestamp(binding["auth_time"], tz=UTC),
        aal=binding["aal"],
        amr=tuple(binding["amr"]),
        nonce=binding.get("nonce"),
        browser_session_id=UUID(browser) if browser else None,
        created_at=row.created_at,
        expires_at=row.expires_at,
        consumed_at=row.consumed_at,
        session_id=row.session_id,
    )


# The statements of a code's life, built once: each runs once per authorization.
_INSERT_CODE = insert(_CODES)
# One conditional update: of racing redemptions exactly one changes the row.
_SPEND_CODE = (
    update(_CODES)
    .where(_CODES.c.digest == bindparam("p_digest"), _CODES.c.consumed_at.is_(None))
    .values(consumed_at=bindparam("p_now"), session_id=bindparam("p_session_id"))
    .returning(*_CODES.c)
)
_CODE_BY_DIGEST = select(_CODES).where(_CODES.c.digest == bindparam("p_digest"))


class SqlAuthorizationCodeRepository(AuthorizationCodeRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, code: AuthorizationCode) -> None:
        await self._c.execute(
            _INSERT_CODE,
            {
                "digest": code.digest,
                "tenant_id": code.tenant_id,
                "client_id": code.client_id,
                "user_id": code.user_id,
                "binding": _binding(code),
                "created_at": code.created_at,
                "expires_at": code.expires_at,
                "consumed_at": code.consumed_at,
                "session_id": code.session_id,
            },
        )

    async def consume(
        self, digest: str, now: datetime, session_id: UUID
    ) -> tuple[AuthorizationCode | None, bool]:
        spent = await self._c.execute(
            _SPEND_CODE, {"p_digest": digest, "p_now": now, "p_session_id": session_id}
        )
        row = spent.first()
        if row is not None:
            return _code(row), True
        # A replay, or no such code (the rare paths): one more read.
        row = (await self._c.execute(_CODE_BY_DIGEST, {"p_digest": digest})).first()
        return (_code(row), False) if row is not None else (None, False)

    async def delete_expired(self, now: datetime) -> int:
        result = await self._c.execute(
            delete(_CODES).where(_CODES.c.expires_at < now - CODE_REPLAY_WINDOW)
        )
        return result.rowcount


def _link(row: Any) -> ClientSession:
    return ClientSession(
        logout_attempts=row.logout_attempts,
        logout_next_at=row.logout_next_at,
        session_id=row.session_id,
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        scopes=tuple(row.scopes.split()),
        audience=row.audience,
        auth_time=row.auth_time,
        created_at=row.created_at,
        browser_session_id=row.browser_session_id,
    )


_INSERT_LINK = insert(_LINKS)  # built once: it runs once per code exchange


class SqlClientSessionRepository(ClientSessionRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, link: ClientSession) -> None:
        await self._c.execute(
            _INSERT_LINK,
            {
                "session_id": link.session_id,
                "tenant_id": link.tenant_id,
                "client_id": link.client_id,
                "user_id": link.user_id,
                "scopes": " ".join(link.scopes),
                "audience": link.audience,
                "auth_time": link.auth_time,
                "created_at": link.created_at,
                "browser_session_id": link.browser_session_id,
            },
        )

    async def get(self, tenant_id: UUID, session_id: UUID) -> ClientSession | None:
        c = _LINKS.c
        row = (
            await self._c.execute(
                select(_LINKS).where(c.tenant_id == tenant_id, c.session_id == session_id)
            )
        ).first()
        return _link(row) if row else None

    async def list_for_user(
        self, tenant_id: UUID, user_id: UUID, client_id: str | None = None
    ) -> list[ClientSession]:
        c = _LINKS.c
        query = select(_LINKS).where(c.tenant_id == tenant_id, c.user_id == user_id)
        if client_id is not None:
            query = query.where(c.client_id == client_id)
        rows = await self._c.execute(query.order_by(c.created_at, c.session_id))
        return [_link(row) for row in rows]

    async def list_for_client(self, tenant_id: UUID, client_id: str) -> list[ClientSession]:
        c = _LINKS.c
        rows = await self._c.execute(
            select(_LINKS)
            .where(c.tenant_id == tenant_id, c.client_id == client_id)
            .order_by(c.created_at, c.session_id)
        )
        return [_link(row) for row in rows]

    async def list_for_browser_session(
        self, tenant_id: UUID, browser_session_id: UUID
    ) -> list[ClientSession]:
        c = _LINKS.c
        rows = await self._c.execute(
            select(_LINKS)
            .where(c.tenant_id == tenant_id, c.browser_session_id == browser_session_id)
            .order_by(c.created_at, c.session_id)
        )
        return [_link(row) for row in rows]

    async def claim_ended(
        self, now: datetime, limit: int, lease: timedelta
    ) -> list[EndedClientSession]:
        c, s = _LINKS.c, t.sessions.c
        due = (
            select(c.session_id)
            .select_from(_LINKS.outerjoin(t.sessions, s.id == c.session_id))
            .where(
                or_(s.id.is_(None), s.revoked_at.is_not(None), s.expires_at <= now),
                or_(c.logout_next_at.is_(None), c.logout_next_at <= now),
            )
            .order_by(c.created_at)
            .limit(limit)
        )
        if self._c.dialect.name == "postgresql":
            # Several processes poll at once: each takes different links.
            due = due.with_for_update(of=_LINKS, skip_locked=True)
        ids = [row.session_id for row in await self._c.execute(due)]
        if not ids:
            return []
        await self._c.execute(
            update(_LINKS)
            .where(c.session_id.in_(ids))
            .values(logout_attempts=c.logout_attempts + 1, logout_next_at=now + lease)
        )
        rows = await self._c.execute(
            select(_LINKS, _CLIENTS.c.metadata.label("client_metadata"))
            .join(_CLIENTS, _CLIENTS.c.client_id == c.client_id)
            .where(c.session_id.in_(ids))
        )
        found = []
        for row in rows:
            meta = dict(row.client_metadata)
            found.append(
                EndedClientSession(
                    _link(row),
                    meta.get("backchannel_logout_uri"),
                    meta.get("id_token_signed_response_alg", "RS256"),
                )
            )
        return found

    async def retry_at(self, session_id: UUID, when: datetime) -> None:
        await self._c.execute(
            update(_LINKS).where(_LINKS.c.session_id == session_id).values(logout_next_at=when)
        )

    async def forget(self, session_ids: list[UUID]) -> None:
        if session_ids:
            await self._c.execute(delete(_LINKS).where(_LINKS.c.session_id.in_(session_ids)))


def _consent(row: Any) -> Consent:
    return Consent(
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        client_id=row.client_id,
        scopes=tuple(row.scopes.split()),
        granted_at=row.granted_at,
    )


class SqlConsentRepository(ConsentRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    def _where(self, tenant_id: UUID, user_id: UUID, client_id: str) -> Any:
        c = _CONSENTS.c
        return (c.tenant_id == tenant_id) & (c.user_id == user_id) & (c.client_id == client_id)

    async def get(self, tenant_id: UUID, user_id: UUID, client_id: str) -> Consent | None:
        row = (
            await self._c.execute(
                select(_CONSENTS).where(self._where(tenant_id, user_id, client_id))
            )
        ).first()
        return _consent(row) if row else None

    async def put(self, consent: Consent) -> None:
        where = self._where(consent.tenant_id, consent.user_id, consent.client_id)
        values = {"scopes": " ".join(consent.scopes), "granted_at": consent.granted_at}
        result = await self._c.execute(update(_CONSENTS).where(where).values(**values))
        if result.rowcount == 0:
            await self._c.execute(
                insert(_CONSENTS).values(
                    tenant_id=consent.tenant_id,
                    user_id=consent.user_id,
                    client_id=consent.client_id,
                    **values,
                )
            )

    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[Consent]:
        c = _CONSENTS.c
        rows = await self._c.execute(
            select(_CONSENTS)
            .where(c.tenant_id == tenant_id, c.user_id == user_id)
            .order_by(c.granted_at, c.client_id)
        )
        return [_consent(row) for row in rows]

    async def delete(self, tenant_id: UUID, user_id: UUID, client_id: str) -> bool:
        result = await self._c.execute(
            delete(_CONSENTS).where(self._where(tenant_id, user_id, client_id))
        )
        return result.rowcount == 1
