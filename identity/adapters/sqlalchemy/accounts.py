"""The account repository over SQLAlchemy Core."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Uuid, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.integrity import constraint_name as _constraint_name
from identity.adapters.sqlalchemy.native import ManyRowsRead
from identity.adapters.sqlalchemy.types import UtcDateTime
from identity.application.ports import AccountRepository, Position
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import EmailAlreadyRegisteredError


def identity_names(value: str | None) -> tuple[str, ...]:
    """The aggregated provider names as the sorted tuple ``Account.identities`` holds."""
    return tuple(sorted(value.split(","))) if value else ()


# The statements of the hot paths are built once: SQLAlchemy memoises a
# statement object's cache key, so each execution skips construction and hashing.
_ACCOUNT_BY_ID = select(t.users).where(
    t.users.c.tenant_id == bindparam("tenant_id"), t.users.c.id == bindparam("account_id")
)
_ACCOUNT_BY_EMAIL = select(t.users).where(
    t.users.c.tenant_id == bindparam("tenant_id"),
    t.users.c.normalized_email == bindparam("email_key"),
)
_ACCOUNTS_FIRST = (
    select(t.users)
    .where(t.users.c.tenant_id == bindparam("tenant_id"))
    .order_by(t.users.c.created_at, t.users.c.id)
    .limit(bindparam("limit"))
)
# A row comparison the (tenant_id, created_at, id) index answers directly.
_ACCOUNTS_AFTER = _ACCOUNTS_FIRST.where(
    tuple_(t.users.c.created_at, t.users.c.id)
    > tuple_(
        bindparam("after_created_at", type_=UtcDateTime()), bindparam("after_id", type_=Uuid())
    )
)
_USER_DATETIMES = ("verified_at", "created_at", "updated_at", "last_login_at")
_ACCOUNTS_FIRST_READ = ManyRowsRead(_ACCOUNTS_FIRST, datetimes=_USER_DATETIMES)
_ACCOUNTS_AFTER_READ = ManyRowsRead(_ACCOUNTS_AFTER, datetimes=_USER_DATETIMES)


class SqlAccountRepository(AccountRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection
        # Column values as read, per account: ``update`` writes only what changed,
        # so a use case holding an older copy cannot undo a concurrent change to
        # another column (a disable, a new password) by writing its stale copy.
        self._read: dict[UUID, dict[str, Any]] = {}

    def _remember(self, row: Any) -> Account | None:
        if row is None:
            return None
        account = self._to_entity(row)
        self._read[account.id] = self._values(account)
        return account

    @staticmethod
    def _to_entity(row: Any) -> Account:
        return Account(
            id=row.id,
            tenant_id=row.tenant_id,
            email=Email(row.email),
            password_hash=row.password_hash,
            full_name=row.full_name,
            is_verified=row.is_verified,
            is_active=row.is_active,
            verified_at=row.verified_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            identities=identity_names(row.identities),
            mfa_enabled=row.mfa_enabled,
            last_login_at=row.last_login_at,
            locale=row.locale,
        )

    @staticmethod
    def _values(account: Account) -> dict[str, Any]:
        return {
            "id": account.id,
            "tenant_id": account.tenant_id,
            "email": account.email.value,
            "normalized_email": account.email.key,
            "password_hash": account.password_hash,
            "full_name": account.full_name,
            "is_verified": account.is_verified,
            "is_active": account.is_active,
            "verified_at": account.verified_at,
            "created_at": account.created_at,
            "updated_at": account.updated_at,
            "mfa_enabled": account.mfa_enabled,
            "locale": account.locale,
        }

    async def get(self, tenant_id: UUID, account_id: UUID) -> Account | None:
        params = {"tenant_id": tenant_id, "account_id": account_id}
        return self._remember((await self._c.execute(_ACCOUNT_BY_ID, params)).first())

    async def get_by_email(self, tenant_id: UUID, email_key: str) -> Account | None:
        params = {"tenant_id": tenant_id, "email_key": email_key}
        return self._remember((await self._c.execute(_ACCOUNT_BY_EMAIL, params)).first())

    async def add(self, account: Account) -> None:
        try:
            # A savepoint keeps the transaction usable after a lost race.
            async with self._c.begin_nested():
                await self._c.execute(insert(t.users).values(**self._values(account)))
        except IntegrityError as error:
            name = _constraint_name(error)
            if t.UQ_USERS_TENANT_EMAIL in name or "normalized_email" in name:
                raise EmailAlreadyRegisteredError("email already registered") from None
            raise
        self._read[account.id] = self._values(account)

    async def update(self, account: Account) -> None:
        values = self._values(account)
        read = self._read.get(account.id)
        changed = {k: v for k, v in values.items() if read is None or read.get(k) != v}
        if not changed:
            return
        await self._c.execute(
            update(t.users)
            .where(t.users.c.tenant_id == account.tenant_id, t.users.c.id == account.id)
            .values(**changed)
        )
        self._read[account.id] = values

    async def list_page(self, tenant_id: UUID, after: Position | None, limit: int) -> list[Account]:
        params: dict[str, Any] = {"tenant_id": tenant_id, "limit": limit}
        read = _ACCOUNTS_FIRST_READ
        if after is not None:
            read = _ACCOUNTS_AFTER_READ
            params.update(after_created_at=after.created_at, after_id=after.id)
        # Read-only: a page is not remembered for ``update``.
        return [self._to_entity(row) for row in await read(self._c, params)]

    async def delete(self, tenant_id: UUID, account_id: UUID) -> bool:
        # Sessions, linked identities and factors go with it (ON DELETE CASCADE).
        result = await self._c.execute(
            delete(t.users).where(t.users.c.tenant_id == tenant_id, t.users.c.id == account_id)
        )
        self._read.pop(account_id, None)
        return result.rowcount == 1
