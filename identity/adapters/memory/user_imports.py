"""In-memory import writer, run repository and exporter, built on the memory unit of work.

The same rules as the SQL adapter (one transaction per batch, keys checked in
it, a clash refuses the record), written through the memory repositories so
the imported users are the ones sign-in reads. Metadata has no place on the
memory account; it is kept here, by user id.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from identity.adapters import user_formats
from identity.adapters.memory import MemoryStore, MemoryUnitOfWork
from identity.application.ports import (
    ImportBatchResult,
    ImportRunRepository,
    Position,
    UserExporter,
    UserImportWriter,
)
from identity.domain.accounts import Account
from identity.domain.external_sign_in import LinkedIdentity
from identity.domain.imports import ImportedUser, ImportRun, LinkedSubject, OnConflict, Refusal
from identity.domain.mfa import TotpFactor

_Metadata = dict[UUID, tuple[Any, Any]]


class MemoryUserImports(UserImportWriter, UserExporter):
    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.metadata_of: _Metadata = {}

    async def write(
        self,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> ImportBatchResult:
        imported = skipped = 0
        refused: list[Refusal] = []
        metadata: _Metadata = {}
        async with MemoryUnitOfWork(self._store) as uow:
            for user in users:
                existing = await uow.accounts.get_by_email(tenant_id, user.email.key)
                if existing is not None:
                    if on_conflict is OnConflict.SKIP:
                        skipped += 1
                    elif on_conflict is OnConflict.FAIL:
                        refused.append(Refusal(user.line, "a user with this email exists"))
                    else:
                        existing.password_hash = user.password_hash
                        existing.full_name = user.full_name
                        existing.is_verified = user.verified
                        existing.is_active = not user.disabled
                        existing.updated_at = now
                        await uow.accounts.update(existing)
                        metadata[existing.id] = (user.app_metadata, user.user_metadata)
                        imported += 1
                    continue
                if user.id is not None and await self._id_taken(uow, user.id):
                    if on_conflict is OnConflict.SKIP:
                        skipped += 1
                    else:
                        refused.append(Refusal(user.line, "a user with this id exists"))
                    continue
                reason = await self._clash(uow, tenant_id, user.identities)
                if reason is not None:
                    refused.append(Refusal(user.line, reason))
                    continue
                account = _account(tenant_id, user, now)
                await uow.accounts.add(account)
                for subject in user.identities:
                    await uow.external_identities.add(
                        LinkedIdentity(
                            id=uuid.uuid4(),
                            tenant_id=tenant_id,
                            user_id=account.id,
                            provider=subject.provider,
                            subject=subject.subject,
                            email_at_link=user.email.value,
                            created_at=account.created_at,
                        )
                    )
                if user.totp_secret is not None:
                    factor = TotpFactor(
                        id=uuid.uuid4(),
                        tenant_id=tenant_id,
                        user_id=account.id,
                        secret=user.totp_secret,
                        created_at=now,
                    )
                    await uow.totp_factors.replace_pending(factor)
                    confirmed = copy.copy(factor)
                    confirmed.confirmed_at = now
                    await uow.totp_factors.record_use(confirmed, None)
                metadata[account.id] = (user.app_metadata, user.user_metadata)
                imported += 1
            if dry_run:
                await uow.rollback()
            else:
                await uow.commit()
                self.metadata_of.update(metadata)
        return ImportBatchResult(imported, skipped, refused)

    async def _id_taken(self, uow: MemoryUnitOfWork, user_id: UUID) -> bool:
        for tenant in await uow.tenants.list():
            if await uow.accounts.get(tenant.id, user_id) is not None:
                return True
        return False

    async def _clash(
        self, uow: MemoryUnitOfWork, tenant_id: UUID, subjects: tuple[LinkedSubject, ...]
    ) -> str | None:
        if len({s.provider for s in subjects}) != len(subjects):
            return "a linked identity belongs to another user or repeats a provider"
        for subject in subjects:
            if await uow.external_identities.get(tenant_id, subject.provider, subject.subject):
                return "a linked identity belongs to another user or repeats a provider"
        return None

    async def metadata(
        self, tenant_id: UUID, user_id: UUID
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        return self.metadata_of.get(user_id, (None, None))

    def ndjson(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[str]:
        return user_formats.ndjson_chunks(self.export(tenant_id, with_secrets=with_secrets))

    async def export(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[ImportedUser]:
        after: Position | None = None
        line = 0
        while True:
            async with MemoryUnitOfWork(self._store) as uow:
                page = await uow.accounts.list_page(tenant_id, after, 500)
                extras: dict[UUID, tuple[tuple[LinkedSubject, ...], str | None]] = {}
                if with_secrets:
                    for account in page:
                        links = await uow.external_identities.list_for_account(
                            tenant_id, account.id
                        )
                        factor = await uow.totp_factors.get(tenant_id, account.id)
                        extras[account.id] = (
                            tuple(LinkedSubject(link.provider, link.subject) for link in links),
                            factor.secret if factor and factor.confirmed_at else None,
                        )
            if not page:
                return
            for account in page:
                line += 1
                subjects, secret = extras.get(account.id, ((), None))
                app_metadata, user_metadata = self.metadata_of.get(account.id, (None, None))
                yield ImportedUser(
                    line=line,
                    email=account.email,
                    verified=account.is_verified,
                    full_name=account.full_name,
                    created_at=account.created_at,
                    disabled=not account.is_active,
                    password_hash=account.password_hash if with_secrets else None,
                    identities=subjects,
                    app_metadata=app_metadata,
                    user_metadata=user_metadata,
                    id=account.id,
                    totp_secret=secret,
                )
            after = Position(page[-1].created_at, page[-1].id)


def _account(tenant_id: UUID, user: ImportedUser, now: datetime) -> Account:
    created = user.created_at or now
    return Account(
        id=user.id or uuid.uuid4(),
        tenant_id=tenant_id,
        email=user.email,
        created_at=created,
        updated_at=now,
        password_hash=user.password_hash,
        full_name=user.full_name,
        is_verified=user.verified,
        is_active=not user.disabled,
        verified_at=created if user.verified else None,
        identities=tuple(sorted(s.provider for s in user.identities)),
        mfa_enabled=user.totp_secret is not None,
    )


class MemoryImportRunRepository(ImportRunRepository):
    def __init__(self) -> None:
        self._runs: dict[UUID, ImportRun] = {}

    async def save(self, run: ImportRun) -> None:
        self._runs[run.id] = copy.deepcopy(run)

    async def get(self, tenant_id: UUID, run_id: UUID) -> ImportRun | None:
        run = self._runs.get(run_id)
        if run is None or run.tenant_id != tenant_id:
            return None
        return copy.deepcopy(run)
