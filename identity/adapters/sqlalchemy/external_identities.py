"""The linked external identities over SQLAlchemy Core."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.integrity import constraint_name as _constraint_name
from identity.application.ports import ExternalIdentityRepository
from identity.domain.errors import IdentityInUseError
from identity.domain.external_sign_in import IdentityAlreadyLinkedError, LinkedIdentity


# ``Account.identities`` is read from ``users.identities``, which linking and
# unlinking recompute from ``external_identities`` in their own transaction.
def _recomputed_identities(account_id: Any) -> Any:
    return (
        select(
            func.aggregate_strings(t.external_identities.c.provider, literal_column("','"))  # type: ignore[arg-type]
        )
        .where(t.external_identities.c.user_id == account_id)
        .scalar_subquery()
    )


class SqlExternalIdentityRepository(ExternalIdentityRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    @staticmethod
    def _to_entity(row: Any) -> LinkedIdentity:
        return LinkedIdentity(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            provider=row.provider,
            subject=row.subject,
            email_at_link=row.email_at_link,
            created_at=row.created_at,
        )

    async def get(self, tenant_id: UUID, provider: str, subject: str) -> LinkedIdentity | None:
        c = t.external_identities.c
        query = select(t.external_identities).where(
            c.tenant_id == tenant_id, c.provider == provider, c.subject == subject
        )
        row = (await self._c.execute(query)).first()
        return self._to_entity(row) if row is not None else None

    async def list_for_account(self, tenant_id: UUID, account_id: UUID) -> list[LinkedIdentity]:
        c = t.external_identities.c
        query = (
            select(t.external_identities)
            .where(c.tenant_id == tenant_id, c.user_id == account_id)
            .order_by(c.created_at, c.provider)
        )
        return [self._to_entity(row) for row in await self._c.execute(query)]

    async def add(self, link: LinkedIdentity) -> None:
        # The account row first: inserting the link share-locks it (foreign key),
        # so locking it after would deadlock two links made to it at once.
        await self._lock_account(link.tenant_id, link.user_id)
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(t.external_identities).values(
                        id=link.id,
                        tenant_id=link.tenant_id,
                        user_id=link.user_id,
                        provider=link.provider,
                        subject=link.subject,
                        email_at_link=link.email_at_link,
                        created_at=link.created_at,
                    )
                )
        except IntegrityError as error:
            name = _constraint_name(error)
            if t.UQ_EXTERNAL_IDENTITIES_SUBJECT in name or "external_identities.subject" in name:
                raise IdentityAlreadyLinkedError(link.provider) from None
            if t.UQ_EXTERNAL_IDENTITIES_ACCOUNT in name or "external_identities.user_id" in name:
                # Both may be violated and only one is named: the subject's wins, so
                # a racing first sign-in finds the link that was made.
                if await self.get(link.tenant_id, link.provider, link.subject) is not None:
                    raise IdentityAlreadyLinkedError(link.provider) from None
                raise IdentityInUseError(link.provider) from None
            raise
        await self._refresh_names(link.tenant_id, link.user_id)

    async def delete(self, tenant_id: UUID, link_id: UUID) -> bool:
        c = t.external_identities.c
        result = await self._c.execute(
            delete(t.external_identities)
            .where(c.tenant_id == tenant_id, c.id == link_id)
            .returning(c.user_id)
        )
        user_id = result.scalar_one_or_none()
        if user_id is None:
            return False
        await self._refresh_names(tenant_id, user_id)
        return True

    async def _lock_account(self, tenant_id: UUID, user_id: UUID) -> None:
        u = t.users.c
        # FOR NO KEY UPDATE: it does not block the share lock of a foreign key check.
        owner = select(u.id).where(u.tenant_id == tenant_id, u.id == user_id)
        await self._c.execute(owner.with_for_update(key_share=True))

    async def _refresh_names(self, tenant_id: UUID, user_id: UUID) -> None:
        """Recompute ``users.identities`` after a link or an unlink.

        Under the account's row lock, in a statement of its own: a concurrent
        link or unlink of the same account waits for that lock, and this
        statement (a new snapshot under READ COMMITTED) sees what it committed.
        """
        await self._lock_account(tenant_id, user_id)
        u = t.users.c
        await self._c.execute(
            update(t.users)
            .where(u.tenant_id == tenant_id, u.id == user_id)
            .values(identities=_recomputed_identities(user_id))
        )
