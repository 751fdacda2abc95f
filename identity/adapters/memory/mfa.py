"""In-memory repositories of multi-factor authentication, with the SQL adapter's semantics.

The secret of a TOTP factor is kept in clear: nothing leaves the process.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import (
    MfaChallengeRepository,
    RecoveryCodeRepository,
    TotpFactorRepository,
)
from identity.domain.mfa import MfaAlreadyEnabledError, MfaChallenge, RecoveryCode, TotpFactor


class MemoryTotpFactorRepository(TotpFactorRepository):
    """Keyed by the account, as the SQL table's unique user_id."""

    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, TotpFactor] = _Table(transaction, "totp_factors", TotpFactor)

    @_round_trip
    async def get(self, tenant_id: UUID, user_id: UUID) -> TotpFactor | None:
        factor = self._t.get(user_id)
        return factor if factor is not None and factor.tenant_id == tenant_id else None

    @_round_trip
    async def replace_pending(self, factor: TotpFactor) -> None:
        await self._t.lock(factor.user_id)
        current = self._t.get(factor.user_id)
        if current is not None and current.is_confirmed:
            raise MfaAlreadyEnabledError("a factor exists")
        self._t.put(factor.user_id, factor)

    @_round_trip
    async def record_use(self, factor: TotpFactor, previous_step: int | None) -> bool:
        await self._t.lock(factor.user_id)
        current = self._t.get(factor.user_id)
        if (
            current is None
            or current.id != factor.id
            or current.tenant_id != factor.tenant_id
            or current.last_used_step != previous_step
        ):
            return False
        current.last_used_step = factor.last_used_step
        current.confirmed_at = factor.confirmed_at
        self._t.put(factor.user_id, current)
        return True

    @_round_trip
    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        return await self._t.delete_where(
            lambda row: row.tenant_id == tenant_id and row.user_id == user_id
        )


class MemoryRecoveryCodeRepository(RecoveryCodeRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, RecoveryCode] = _Table(transaction, "recovery_codes", RecoveryCode)

    @_round_trip
    async def replace_all(self, tenant_id: UUID, user_id: UUID, codes: list[RecoveryCode]) -> None:
        await self._t.delete_where(
            lambda row: row.tenant_id == tenant_id and row.user_id == user_id
        )
        for code in codes:
            await self._t.lock(code.id)
            self._t.put(code.id, code)

    @_round_trip
    async def use(self, tenant_id: UUID, user_id: UUID, code_digest: str, now: datetime) -> bool:
        def matches(row: RecoveryCode) -> bool:
            return (
                row.tenant_id == tenant_id
                and row.user_id == user_id
                and row.code_digest == code_digest
                and row.used_at is None
            )

        for key, _ in [(key, row) for key, row in self._t.rows() if matches(row)]:
            await self._t.lock(key)
            row = self._t.get(key)
            if row is not None and matches(row):
                self._t.put(
                    key,
                    RecoveryCode(
                        id=row.id,
                        tenant_id=row.tenant_id,
                        user_id=row.user_id,
                        code_digest=row.code_digest,
                        created_at=row.created_at,
                        used_at=now,
                    ),
                )
                return True
        return False

    @_round_trip
    async def count_unused(self, tenant_id: UUID, user_id: UUID) -> int:
        return sum(
            1
            for _, row in self._t.rows()
            if row.tenant_id == tenant_id and row.user_id == user_id and row.used_at is None
        )

    @_round_trip
    async def delete_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        return await self._t.delete_where(
            lambda row: row.tenant_id == tenant_id and row.user_id == user_id
        )


class MemoryMfaChallengeRepository(MfaChallengeRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, MfaChallenge] = _Table(transaction, "mfa_challenges", MfaChallenge)

    @_round_trip
    async def add(self, challenge: MfaChallenge) -> None:
        await self._t.lock(challenge.key)
        self._t.put(challenge.key, challenge)

    @_round_trip
    async def get(self, tenant_id: UUID, key: str) -> MfaChallenge | None:
        challenge = self._t.get(key)
        return challenge if challenge is not None and challenge.tenant_id == tenant_id else None

    @_round_trip
    async def record_check(self, challenge: MfaChallenge, attempts_before: int) -> bool:
        await self._t.lock(challenge.key)
        current = self._t.get(challenge.key)
        if (
            current is None
            or current.tenant_id != challenge.tenant_id
            or current.attempts != attempts_before
            or current.consumed_at is not None
        ):
            return False
        current.attempts = challenge.attempts
        current.consumed_at = challenge.consumed_at
        self._t.put(challenge.key, current)
        return True

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.expires_at <= now)
