"""Passkey and WebAuthn flow repositories over SQLAlchemy Core. They never commit."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.accounts import SqlAccountRepository
from identity.adapters.sqlalchemy.native import ManyRowsRead
from identity.application.ports import PasskeyRepository, SignInCandidate, WebAuthnFlowRepository
from identity.domain.passkeys import Ceremony, Passkey, PasskeyExistsError, WebAuthnFlow

_P = t.passkeys
_H = t.webauthn_user_handles
_F = t.webauthn_flows

# The statements of a sign-in, built once: building and keying a statement per
# call is a measurable share of the sign-in's CPU.
_U = t.users
_FOR_SIGN_IN = (
    select(_P, _H.c.handle, *(column.label(f"account_{column.name}") for column in _U.c))
    .join(_U, _U.c.id == _P.c.user_id)
    .outerjoin(_H, _H.c.user_id == _P.c.user_id)
    .where(_P.c.tenant_id == bindparam("tenant_id"), _P.c.credential_id == bindparam("credential"))
)
# Straight to the driver on asyncpg (a sign-in's read, inside its transaction).
_FOR_SIGN_IN_READ = ManyRowsRead(
    _FOR_SIGN_IN,
    datetimes=(
        "created_at",
        "last_used_at",
        *(
            f"account_{name}"
            for name in ("verified_at", "created_at", "updated_at", "last_login_at")
        ),
    ),
)
_RECORD_SIGN_IN = (
    update(_P)
    .where(
        _P.c.tenant_id == bindparam("b_tenant_id"),
        _P.c.id == bindparam("b_id"),
        _P.c.sign_count == bindparam("b_previous"),
    )
    .values(
        sign_count=bindparam("b_sign_count"),
        backed_up=bindparam("b_backed_up"),
        last_used_at=bindparam("b_last_used_at"),
    )
)
_ADD_FLOW = insert(_F)
_TAKE_FLOW = delete(_F).where(_F.c.id == bindparam("key")).returning(*_F.c)
# Straight to the driver on asyncpg too. As the first statement of a unit of work it
# runs before SQLAlchemy begins the transaction, so the flow is spent at once,
# whatever the rest of the ceremony does.
_TAKE_FLOW_NATIVE = ManyRowsRead(_TAKE_FLOW, datetimes=("created_at", "expires_at"))  # type: ignore[arg-type]


def _to_passkey(row: Any) -> Passkey:
    return Passkey(
        id=row.id,
        tenant_id=row.tenant_id,
        user_id=row.user_id,
        credential_id=bytes(row.credential_id),
        public_key=bytes(row.public_key),
        sign_count=row.sign_count,
        transports=tuple(item for item in row.transports.split(",") if item),
        backup_eligible=row.backup_eligible,
        backed_up=row.backed_up,
        aaguid=row.aaguid,
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


def _violated(error: IntegrityError) -> str:
    original: Any = getattr(error.orig, "__cause__", None) or error.orig
    name = getattr(original, "constraint_name", None)
    return str(name) if name else str(error.orig)


class SqlPasskeyRepository(PasskeyRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, passkey: Passkey) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(_P).values(
                        id=passkey.id,
                        tenant_id=passkey.tenant_id,
                        user_id=passkey.user_id,
                        credential_id=passkey.credential_id,
                        public_key=passkey.public_key,
                        sign_count=passkey.sign_count,
                        transports=",".join(passkey.transports),
                        backup_eligible=passkey.backup_eligible,
                        backed_up=passkey.backed_up,
                        aaguid=passkey.aaguid,
                        name=passkey.name,
                        created_at=passkey.created_at,
                        last_used_at=passkey.last_used_at,
                    )
                )
        except IntegrityError as error:
            name = _violated(error)
            # SQLite names the columns, not the constraint.
            if t.UQ_PASSKEYS_CREDENTIAL in name or "passkeys.credential_id" in name:
                raise PasskeyExistsError("credential registered") from None
            raise

    async def get(self, tenant_id: UUID, passkey_id: UUID) -> Passkey | None:
        query = select(_P).where(_P.c.tenant_id == tenant_id, _P.c.id == passkey_id)
        row = (await self._c.execute(query)).first()
        return _to_passkey(row) if row else None

    async def get_by_credential(self, tenant_id: UUID, credential_id: bytes) -> Passkey | None:
        query = select(_P).where(_P.c.tenant_id == tenant_id, _P.c.credential_id == credential_id)
        row = (await self._c.execute(query)).first()
        return _to_passkey(row) if row else None

    async def get_for_sign_in(
        self, tenant_id: UUID, credential_id: bytes
    ) -> SignInCandidate | None:
        params = {"tenant_id": tenant_id, "credential": credential_id}
        rows = await _FOR_SIGN_IN_READ(self._c, params)
        if not rows:
            return None
        row = rows[0]
        account = SimpleNamespace(
            **{column.name: getattr(row, f"account_{column.name}") for column in _U.c}
        )
        return SignInCandidate(
            passkey=_to_passkey(row),
            account=SqlAccountRepository._to_entity(account),
            user_handle=bytes(row.handle) if row.handle is not None else None,
        )

    async def list_for_account(self, tenant_id: UUID, user_id: UUID) -> list[Passkey]:
        query = (
            select(_P)
            .where(_P.c.tenant_id == tenant_id, _P.c.user_id == user_id)
            .order_by(_P.c.created_at, _P.c.id)
        )
        return [_to_passkey(row) for row in await self._c.execute(query)]

    async def list_for_email(self, tenant_id: UUID, email_key: str) -> list[Passkey]:
        users = t.users.c
        query = (
            select(_P)
            .join(t.users, users.id == _P.c.user_id)
            .where(users.tenant_id == tenant_id, users.normalized_email == email_key)
            .where(_P.c.tenant_id == tenant_id)
            .order_by(_P.c.created_at, _P.c.id)
        )
        return [_to_passkey(row) for row in await self._c.execute(query)]

    async def count_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        query = (
            select(func.count())
            .select_from(_P)
            .where(_P.c.tenant_id == tenant_id, _P.c.user_id == user_id)
        )
        return int((await self._c.execute(query)).scalar_one())

    async def count_for_accounts(self, tenant_id: UUID, user_ids: list[UUID]) -> dict[UUID, int]:
        if not user_ids:
            return {}
        query = (
            select(_P.c.user_id, func.count())
            .where(_P.c.tenant_id == tenant_id, _P.c.user_id.in_(user_ids))
            .group_by(_P.c.user_id)
        )
        return {row[0]: int(row[1]) for row in await self._c.execute(query)}

    async def rename(self, passkey: Passkey) -> bool:
        result = await self._c.execute(
            update(_P)
            .where(_P.c.tenant_id == passkey.tenant_id, _P.c.id == passkey.id)
            .values(name=passkey.name)
        )
        return result.rowcount == 1

    async def record_sign_in(self, passkey: Passkey, previous_sign_count: int) -> bool:
        params = {
            "b_tenant_id": passkey.tenant_id,
            "b_id": passkey.id,
            "b_previous": previous_sign_count,
            "b_sign_count": passkey.sign_count,
            "b_backed_up": passkey.backed_up,
            "b_last_used_at": passkey.last_used_at,
        }
        result = await self._c.execute(_RECORD_SIGN_IN, params)
        return result.rowcount == 1

    async def delete(self, tenant_id: UUID, passkey_id: UUID) -> bool:
        result = await self._c.execute(
            delete(_P).where(_P.c.tenant_id == tenant_id, _P.c.id == passkey_id)
        )
        return result.rowcount == 1

    async def user_handle(self, tenant_id: UUID, user_id: UUID, new: bytes) -> bytes:
        query = select(_H.c.handle).where(_H.c.tenant_id == tenant_id, _H.c.user_id == user_id)
        found = (await self._c.execute(query)).scalar_one_or_none()
        if found is not None:
            return bytes(found)
        values = {
            "user_id": user_id,
            "tenant_id": tenant_id,
            "handle": new,
            "created_at": func.now(),
        }
        # A racing first use inserts nothing and reads the winner's handle.
        dialect = self._c.dialect.name
        make = pg_insert if dialect == "postgresql" else sqlite_insert
        await self._c.execute(make(_H).values(**values).on_conflict_do_nothing())
        return bytes((await self._c.execute(query)).scalar_one())


class SqlWebAuthnFlowRepository(WebAuthnFlowRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, flow: WebAuthnFlow) -> None:
        await self._c.execute(
            _ADD_FLOW,
            {
                "id": flow.key,
                "tenant_id": flow.tenant_id,
                "ceremony": flow.ceremony.value,
                "user_id": flow.user_id,
                "email_bound": flow.email_bound,
                "created_at": flow.created_at,
                "expires_at": flow.expires_at,
            },
        )

    async def take(self, key: str) -> WebAuthnFlow | None:
        # One DELETE ... RETURNING: the flow goes to exactly one of several racing verifies.
        rows = await _TAKE_FLOW_NATIVE(self._c, {"key": key})
        if not rows:
            return None
        row = rows[0]
        return WebAuthnFlow(
            key=row.id,
            tenant_id=row.tenant_id,
            ceremony=Ceremony(row.ceremony),
            user_id=row.user_id,
            email_bound=row.email_bound,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    async def delete_expired(self, now: datetime) -> int:
        result = await self._c.execute(delete(_F).where(_F.c.expires_at <= now))
        return result.rowcount
