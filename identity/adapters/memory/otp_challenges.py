"""The in-memory one-time code challenge repository."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import OtpChallengeRepository
from identity.domain.otp import OtpChallenge, OtpPurpose

_ChallengeKey = tuple[UUID, str, OtpPurpose]


class MemoryOtpChallengeRepository(OtpChallengeRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[_ChallengeKey, OtpChallenge] = _Table(
            transaction, "challenges", OtpChallenge
        )

    @_round_trip
    async def get(
        self, tenant_id: UUID, email_key: str, purpose: OtpPurpose
    ) -> OtpChallenge | None:
        return self._t.get((tenant_id, email_key, purpose))

    @_round_trip
    async def replace(self, challenge: OtpChallenge) -> None:
        key = (challenge.tenant_id, challenge.email_key, challenge.purpose)
        await self._t.lock(key)
        self._t.put(key, challenge)

    @_round_trip
    async def record_check(self, challenge: OtpChallenge, attempts_before: int) -> bool:
        key = (challenge.tenant_id, challenge.email_key, challenge.purpose)
        await self._t.lock(key)
        current = self._t.get(key)
        if (
            current is None
            or current.id != challenge.id
            or current.attempts != attempts_before
            or current.consumed_at is not None
        ):
            return False
        current.attempts = challenge.attempts
        current.consumed_at = challenge.consumed_at
        self._t.put(key, current)
        return True

    @_round_trip
    async def record_failure(self, placeholder: OtpChallenge) -> None:
        key = (placeholder.tenant_id, placeholder.email_key, placeholder.purpose)
        await self._t.lock(key)
        current = self._t.get(key) or placeholder
        current.attempts += 1
        self._t.put(key, current)

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(
            lambda row: row.expires_at < now or row.consumed_at is not None
        )

    @_round_trip
    async def delete_for_email(self, tenant_id: UUID, email_key: str) -> int:
        return await self._t.delete_where(
            lambda row: row.tenant_id == tenant_id and row.email_key == email_key
        )
