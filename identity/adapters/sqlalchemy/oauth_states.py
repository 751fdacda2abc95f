"""Pending external sign-ins over SQLAlchemy Core; the PKCE verifier is stored sealed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer, UnsealError
from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import OAuthStateRepository
from identity.domain.external_sign_in import PendingSignIn


class SqlOAuthStateRepository(OAuthStateRepository):
    """Pending sign-ins; the PKCE verifier is stored sealed."""

    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def add(self, pending: PendingSignIn) -> None:
        await self._c.execute(
            insert(t.oauth_states).values(
                id=pending.key,
                tenant_id=pending.tenant_id,
                provider=pending.provider,
                link_user_id=pending.link_user_id,
                state_hash=pending.state_digest,
                nonce=pending.nonce,
                code_verifier=self._sealer.seal(pending.code_verifier.encode()),
                redirect_to=pending.redirect_to,
                created_at=pending.created_at,
                expires_at=pending.expires_at,
            )
        )

    async def take(self, key: str) -> PendingSignIn | None:
        # One DELETE ... RETURNING: the row goes to exactly one of several racing callbacks.
        statement = (
            delete(t.oauth_states).where(t.oauth_states.c.id == key).returning(*t.oauth_states.c)
        )
        row = (await self._c.execute(statement)).first()
        if row is None:
            return None
        try:
            code_verifier = self._sealer.unseal(row.code_verifier).decode()
        except UnsealError:
            return None  # sealed under a previous secret key: the flow cannot finish
        return PendingSignIn(
            key=row.id,
            tenant_id=row.tenant_id,
            provider=row.provider,
            link_user_id=row.link_user_id,
            state_digest=row.state_hash,
            nonce=row.nonce,
            code_verifier=code_verifier,
            redirect_to=row.redirect_to,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def delete_expired(self, now: datetime) -> int:
        result = await self._c.execute(
            delete(t.oauth_states).where(t.oauth_states.c.expires_at <= now)
        )
        return result.rowcount
