"""The one-time code challenge repository over SQLAlchemy Core."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import OtpChallengeRepository
from identity.domain.otp import OtpChallenge, OtpPurpose


def _values(challenge: OtpChallenge) -> dict[str, Any]:
    return {
        "id": challenge.id,
        "tenant_id": challenge.tenant_id,
        "email_key": challenge.email_key,
        "purpose": challenge.purpose.value,
        "code_digest": challenge.code_digest,
        "created_at": challenge.created_at,
        "expires_at": challenge.expires_at,
        "max_attempts": challenge.max_attempts,
        "attempts": challenge.attempts,
        "consumed_at": challenge.consumed_at,
    }


class SqlOtpChallengeRepository(OtpChallengeRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def get(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose
    ) -> OtpChallenge | None:
        c = t.otp_challenges.c
        query = select(t.otp_challenges).where(
            c.tenant_id == tenant_id, c.email_key == email_key, c.purpose == purpose.value
        )
        row = (await self._c.execute(query)).first()
        if row is None:
            return None
        return OtpChallenge(
            id=row.id,
            tenant_id=row.tenant_id,
            email_key=row.email_key,
            purpose=OtpPurpose(row.purpose),
            code_digest=row.code_digest,
            created_at=row.created_at,
            expires_at=row.expires_at,
            max_attempts=row.max_attempts,
            attempts=row.attempts,
            consumed_at=row.consumed_at,
        )

    async def replace(self, challenge: OtpChallenge) -> None:
        c = t.otp_challenges.c
        await self._c.execute(
            delete(t.otp_challenges).where(
                c.tenant_id == challenge.tenant_id,
                c.email_key == challenge.email_key,
                c.purpose == challenge.purpose.value,
            )
        )
        await self._c.execute(insert(t.otp_challenges).values(**_values(challenge)))

    async def record_check(self, challenge: OtpChallenge, attempts_before: int) -> bool:
        c = t.otp_challenges.c
        result = await self._c.execute(
            update(t.otp_challenges)
            .where(
                c.id == challenge.id,
                c.tenant_id == challenge.tenant_id,
                c.attempts == attempts_before,
                c.consumed_at.is_(None),
            )
            .values(attempts=challenge.attempts, consumed_at=challenge.consumed_at)
        )
        return result.rowcount == 1

    async def record_failure(self, placeholder: OtpChallenge) -> None:
        c = t.otp_challenges.c
        insert_ = pg_insert if self._c.dialect.name == "postgresql" else sqlite_insert
        values = _values(placeholder) | {"attempts": placeholder.attempts + 1}
        # One statement for every case: an existing code counts the try, else the
        # placeholder is stored (the same write, so the same time).
        await self._c.execute(
            insert_(t.otp_challenges)
            .values(**values)
            .on_conflict_do_update(
                index_elements=[c.tenant_id, c.email_key, c.purpose],
                set_={"attempts": c.attempts + 1},
            )
        )

    async def delete_expired(self, now: datetime) -> int:
        c = t.otp_challenges.c
        result = await self._c.execute(
            delete(t.otp_challenges).where(or_(c.expires_at < now, c.consumed_at.is_not(None)))
        )
        return result.rowcount

    async def delete_for_email(self, tenant_id: UUID, email_key: str) -> int:
        c = t.otp_challenges.c
        result = await self._c.execute(
            delete(t.otp_challenges).where(c.tenant_id == tenant_id, c.email_key == email_key)
        )
        return result.rowcount
