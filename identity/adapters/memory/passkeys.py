"""In-memory passkey and WebAuthn flow repositories, with the SQL adapter's semantics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import attrs

from identity.adapters.memory.store import MemoryIntegrityError, _round_trip, _Table, _Transaction
from identity.application.ports import PasskeyRepository, SignInCandidate, WebAuthnFlowRepository
from identity.domain.accounts import Account
from identity.domain.passkeys import Passkey, PasskeyExistsError, WebAuthnFlow


@attrs.frozen
class _UserHandle:
    tenant_id: UUID
    user_id: UUID  # named so: an erased account's handle goes with it (see accounts.delete)
    handle: bytes


class MemoryPasskeyRepository(PasskeyRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[UUID, Passkey] = _Table(transaction, "passkeys", Passkey)
        self._handles: _Table[UUID, _UserHandle] = _Table(
            transaction, "webauthn_user_handles", _UserHandle
        )
        self._accounts: _Table[UUID, Account] = _Table(transaction, "accounts", Account)

    @_round_trip
    async def add(self, passkey: Passkey) -> None:
        # The lock stands for the unique (tenant, credential id) index entry.
        await self._t.lock((passkey.tenant_id, passkey.credential_id), index="passkeys.credential")
        if self._find(passkey.tenant_id, passkey.credential_id) is not None:
            raise PasskeyExistsError("credential registered")
        await self._t.lock(passkey.id)
        if self._t.get(passkey.id) is not None:
            raise MemoryIntegrityError(f"passkey {passkey.id} exists")
        self._t.put(passkey.id, passkey)

    @_round_trip
    async def get(self, tenant_id: UUID, passkey_id: UUID) -> Passkey | None:
        passkey = self._t.get(passkey_id)
        return passkey if passkey is not None and passkey.tenant_id == tenant_id else None

    @_round_trip
    async def get_by_credential(self, tenant_id: UUID, credential_id: bytes) -> Passkey | None:
        return self._find(tenant_id, credential_id)

    @_round_trip
    async def get_for_sign_in(
        self, tenant_id: UUID, credential_id: bytes
    ) -> SignInCandidate | None:
        passkey = self._find(tenant_id, credential_id)
        if passkey is None:
            return None
        account = self._accounts.get(passkey.user_id)
        if account is None:
            return None
        handle = self._handles.get(passkey.user_id)
        return SignInCandidate(passkey, account, handle.handle if handle is not None else None)

    @_round_trip
    async def list_for_account(self, tenant_id: UUID, user_id: UUID) -> list[Passkey]:
        return self._of(tenant_id, {user_id})

    @_round_trip
    async def list_for_email(self, tenant_id: UUID, email_key: str) -> list[Passkey]:
        owners = {
            account.id
            for _, account in self._accounts.rows()
            if account.tenant_id == tenant_id and account.email.key == email_key
        }
        return self._of(tenant_id, owners)

    @_round_trip
    async def count_for_account(self, tenant_id: UUID, user_id: UUID) -> int:
        return len(self._of(tenant_id, {user_id}))

    @_round_trip
    async def count_for_accounts(self, tenant_id: UUID, user_ids: list[UUID]) -> dict[UUID, int]:
        counts: dict[UUID, int] = {}
        for passkey in self._of(tenant_id, set(user_ids)):
            counts[passkey.user_id] = counts.get(passkey.user_id, 0) + 1
        return counts

    @_round_trip
    async def rename(self, passkey: Passkey) -> bool:
        def rename(row: Passkey) -> None:
            row.name = passkey.name

        return await self._t.update_where(self._is(passkey), rename) == 1

    @_round_trip
    async def record_sign_in(self, passkey: Passkey, previous_sign_count: int) -> bool:
        def matches(row: Passkey) -> bool:
            return self._is(passkey)(row) and row.sign_count == previous_sign_count

        def record(row: Passkey) -> None:
            row.sign_count = passkey.sign_count
            row.backed_up = passkey.backed_up
            row.last_used_at = passkey.last_used_at

        return await self._t.update_where(matches, record) == 1

    @_round_trip
    async def delete(self, tenant_id: UUID, passkey_id: UUID) -> bool:
        return (
            await self._t.delete_where(
                lambda row: row.tenant_id == tenant_id and row.id == passkey_id
            )
            == 1
        )

    @_round_trip
    async def user_handle(self, tenant_id: UUID, user_id: UUID, new: bytes) -> bytes:
        await self._handles.lock(user_id)
        current = self._handles.get(user_id)
        if current is not None and current.tenant_id == tenant_id:
            return current.handle
        self._handles.put(user_id, _UserHandle(tenant_id, user_id, new))
        return new

    def _find(self, tenant_id: UUID, credential_id: bytes) -> Passkey | None:
        return next(
            (
                row
                for _, row in self._t.rows()
                if row.tenant_id == tenant_id and row.credential_id == credential_id
            ),
            None,
        )

    def _of(self, tenant_id: UUID, user_ids: set[UUID]) -> list[Passkey]:
        mine = [
            row
            for _, row in self._t.rows()
            if row.tenant_id == tenant_id and row.user_id in user_ids
        ]
        return sorted(mine, key=lambda row: (row.created_at, row.id))

    @staticmethod
    def _is(passkey: Passkey) -> Callable[[Passkey], bool]:
        return lambda row: row.tenant_id == passkey.tenant_id and row.id == passkey.id


class MemoryWebAuthnFlowRepository(WebAuthnFlowRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t: _Table[str, WebAuthnFlow] = _Table(transaction, "webauthn_flows", WebAuthnFlow)

    @_round_trip
    async def add(self, flow: WebAuthnFlow) -> None:
        await self._t.lock(flow.key)
        if self._t.get(flow.key) is not None:
            raise MemoryIntegrityError("flow key exists")
        self._t.put(flow.key, flow)

    @_round_trip
    async def take(self, key: str) -> WebAuthnFlow | None:
        # Like DELETE ... RETURNING: concurrent takers wait, then find nothing.
        await self._t.lock(key)
        flow = self._t.get(key)
        if flow is not None:
            self._t.delete(key)
        return flow

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.expires_at <= now)
