"""Repositories of multi-factor authentication over SQLAlchemy Core. They never commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import (
    MfaChallengeRepository,
    RecoveryCodeRepository,
    TotpFactorRepository,
)
from identity.domain.mfa import Amr, MfaAlreadyEnabledError, MfaChallenge, RecoveryCode, TotpFactor


class SqlTotpFactorRepository(TotpFactorRepository):
    """The secret is sealed at rest with a key of its own purpose."""

    def __init__(self, connection: AsyncConnection, sealer: Sealer) -> None:
        self._c = connection
        self._sealer = sealer

    async def get(self, tenant_id: UUID, user_id: UUID) -> TotpFactor | None:
        c = t.totp_factors.c
        query = select(t.totp_factors).where(c.tenant_id == tenant_id, c.user_id == user_id)
        row = (await self._c.execute(query)).first()
        if row is None:
            return None
        return TotpFactor(
            id=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            # An unsealing failure (another secret key) is loud: it is an operator error.
            secret=self._sealer.unseal(row.secret).decode(),
            created_at=row.created_at,
            confirmed_at=row.confirmed_at,
            last_used_step=row.last_used_step,
        )

    async def replace_pending(self, factor: TotpFactor) -> None:
        c = t.totp_factors.c
        await self._c.execute(
            delete(t.totp_factors).where(
                c.tenant_id == factor.tenant_id,
                c.user_id == factor.user_id,
                c.confirmed_at.is_(None),
            )
        )
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(t.totp_factors).values(
                        id=factor.id,
                        tenant_id=factor.tenant_id,
                        user_id=factor.user_id,
                        secret=self._sealer.seal(factor.secret.encode()),
                        created_at=factor.created_at,
                        confirmed_at=None,
                        last_used_step=None,
                    )
                )
        except IntegrityError:
            # uq_totp_factors_user_id: a confirmed factor is there (or a racing
            # enrolment committed first); the pending delete above spared it.
            raise MfaAlreadyEnabledError("a factor exists") from None

    async def record_use(self, factor: TotpFactor, previous_step: int | None) -> bool:
        c = t.totp_factors.c
        unchanged = (
            c.last_used_step.is_(None)
            if previous_step is None
            else c.last_used_step == previous_step
        )
        result = await self._c.execute(
            update(t.totp_factors)
            .where(c.id == factor.id, c.tenant_id == factor.tenant_id, unchanged)
            .values(last_used_step=factor.last_used_step, confirmed_at=factor.confirmed_at)
        )
        return result.rowcount == 1

    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        c = t.totp_factors.c
        result = await self._c.execute(
            delete(t.totp_factors).where(c.tenant_id == tenant_id, c.user_id == user_id)
        )
        return result.rowcount


class SqlRecoveryCodeRepository(RecoveryCodeRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def replace_all(self, tenant_id: UUID, user_id: UUID, codes: list[RecoveryCode]) -> None:
        await self.delete_for_account(tenant_id, user_id)
        if not codes:
            return
        await self._c.execute(
            insert(t.recovery_codes),
            [
                {
                    "id": code.id,
                    "tenant_id": code.tenant_id,
                    "user_id": code.user_id,
                    "code_hash": code.code_digest,
                    "created_at": code.created_at,
                    "used_at": code.used_at,
                }
                for code in codes
            ],
        )

    async def use(self, tenant_id: UUID, user_id: UUID, code_digest: str, now: datetime) -> bool:
        c = t.recovery_codes.c
        # One conditional update: a racing use of the same code finds it used.
        result = await self._c.execute(
            update(t.recovery_codes)
            .where(
                and_(
                    c.tenant_id == tenant_id,
                    c.user_id == user_id,
                    c.code_hash == code_digest,
                    c.used_at.is_(None),
                )
            )
            .values(used_at=now)
        )
        return result.rowcount >= 1

    async def count_unused(self, tenant_id: UUID, user_id: UUID) -> int:
        c = t.recovery_codes.c
        query = (
            select(func.count())
            .select_from(t.recovery_codes)
            .where(c.tenant_id == tenant_id, c.user_id == user_id, c.used_at.is_(None))
        )
        return int((await self._c.execute(query)).scalar_one())

    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        c = t.recovery_codes.c
        result = await self._c.execute(
            delete(t.recovery_codes).where(c.tenant_id == tenant_id, c.user_id == user_id)
        )
        return result.rowcount


class SqlMfaChallengeRepository(MfaChallengeRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, challenge: MfaChallenge) -> None:
        await self._c.execute(insert(t.mfa_challenges).values(**self._values(challenge)))

    async def get(self, tenant_id: UUID, key: str) -> MfaChallenge | None:
        c = t.mfa_challenges.c
        query = select(t.mfa_challenges).where(c.id == key, c.tenant_id == tenant_id)
        row = (await self._c.execute(query)).first()
        return self._to_entity(row) if row else None

    async def record_check(self, challenge: MfaChallenge, attempts_before: int) -> bool:
        c = t.mfa_challenges.c
        result = await self._c.execute(
            update(t.mfa_challenges)
            .where(
                c.id == challenge.key,
                c.tenant_id == challenge.tenant_id,
                c.attempts == attempts_before,
                c.consumed_at.is_(None),
            )
            .values(attempts=challenge.attempts, consumed_at=challenge.consumed_at)
        )
        return result.rowcount == 1

    async def delete_expired(self, now: datetime) -> int:
        c = t.mfa_challenges.c
        result = await self._c.execute(delete(t.mfa_challenges).where(c.expires_at <= now))
        return result.rowcount

    @staticmethod
    def _values(challenge: MfaChallenge) -> dict[str, Any]:
        return {
            "id": challenge.key,
            "tenant_id": challenge.tenant_id,
            "user_id": challenge.user_id,
            "first_factor": challenge.first_factor.value,
            "user_agent": challenge.user_agent,
            "ip": challenge.ip,
            "created_at": challenge.created_at,
            "expires_at": challenge.expires_at,
            "attempts": challenge.attempts,
            "consumed_at": challenge.consumed_at,
        }

    @staticmethod
    def _to_entity(row: Any) -> MfaChallenge:
        return MfaChallenge(
            key=row.id,
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            first_factor=Amr(row.first_factor),
            user_agent=row.user_agent,
            ip=row.ip,
            created_at=row.created_at,
            expires_at=row.expires_at,
            attempts=row.attempts,
            consumed_at=row.consumed_at,
        )
