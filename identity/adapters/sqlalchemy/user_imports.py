"""Bulk import and export of users, and the progress of import runs (SQLAlchemy Core).

One batch is one transaction: the keys already taken are read in one query
each (emails of the tenant, kept ids, linked subjects), the new users are
written with one ``executemany`` per table, their linked subjects and TOTP
factors alike; a user and what belongs to them are in the same transaction,
so an interrupted run never leaves half a user. On Postgres with asyncpg the
same is done natively, with binary ``COPY`` (``pg_user_imports.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy import bindparam, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters import user_formats
from identity.adapters.sealing import Sealer
from identity.adapters.sqlalchemy import pg_user_imports
from identity.adapters.sqlalchemy import tables as t
from identity.application.ports import (
    ImportBatchResult,
    ImportRunRepository,
    UserExporter,
    UserImportWriter,
)
from identity.domain.emails import Email
from identity.domain.imports import (
    ImportedUser,
    ImportRun,
    ImportState,
    LinkedSubject,
    OnConflict,
    Refusal,
)

EXPORT_PAGE = 5000


class SqlUserImportWriter(UserImportWriter):
    def __init__(self, engine: AsyncEngine, totp_sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = totp_sealer
        self._batches = pg_user_imports.PgImportBatches(totp_sealer)

    async def write(
        self,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        *,
        dry_run: bool = False,
    ) -> ImportBatchResult:
        try:
            if self._native():
                async with self._engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    return await self._batches.write(
                        raw.driver_connection,
                        tenant_id,
                        users,
                        on_conflict,
                        now,
                        dry_run=dry_run,
                    )
            return await self._write(tenant_id, users, on_conflict, now, dry_run=dry_run)
        except (IntegrityError, asyncpg.IntegrityConstraintViolationError):
            # Something stored meanwhile (or left by another tool) clashes with a row of
            # this batch: each user on their own, the clashing one refused.
            if len(users) == 1:
                reason = "the user clashes with stored data (a linked identity or factor)"
                return ImportBatchResult(0, 0, [Refusal(users[0].line, reason)])
        imported = skipped = 0
        refused: list[Refusal] = []
        for user in users:
            one = await self.write(tenant_id, [user], on_conflict, now, dry_run=dry_run)
            imported, skipped = imported + one.imported, skipped + one.skipped
            refused.extend(one.refused)
        return ImportBatchResult(imported, skipped, refused)

    def _native(self) -> bool:
        dialect = self._engine.dialect
        return dialect.name == "postgresql" and dialect.driver == "asyncpg"

    async def _write(
        self,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        *,
        dry_run: bool,
    ) -> ImportBatchResult:
        u, x = t.users.c, t.external_identities.c
        async with self._engine.connect() as conn:
            keys = [user.email.key for user in users]
            taken = {
                row.normalized_email: row.id
                for row in await conn.execute(
                    select(u.normalized_email, u.id).where(
                        u.tenant_id == tenant_id, u.normalized_email.in_(keys)
                    )
                )
            }
            kept_ids = [user.id for user in users if user.id is not None]
            used_ids: set[UUID] = set()
            if kept_ids:
                used_ids = set(
                    (await conn.execute(select(u.id).where(u.id.in_(kept_ids)))).scalars()
                )
            subjects = [(s.provider, s.subject) for user in users for s in user.identities]
            linked: dict[tuple[str, str], UUID] = {}
            if subjects:
                linked = {
                    (row.provider, row.subject): row.user_id
                    for row in await conn.execute(
                        select(x.provider, x.subject, x.user_id).where(
                            x.tenant_id == tenant_id,
                            tuple_(x.provider, x.subject).in_(subjects),
                        )
                    )
                }
            new_users: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            links: list[dict[str, Any]] = []
            factors: list[dict[str, Any]] = []
            refused: list[Refusal] = []
            skipped = 0
            for user in users:
                existing = taken.get(user.email.key)
                if existing is not None:
                    if on_conflict is OnConflict.SKIP:
                        skipped += 1
                    elif on_conflict is OnConflict.FAIL:
                        refused.append(Refusal(user.line, "a user with this email exists"))
                    else:
                        updates.append(_update_row(existing, user, now))
                    continue
                if user.id is not None and user.id in used_ids:
                    if on_conflict is OnConflict.SKIP:
                        skipped += 1
                    else:
                        refused.append(Refusal(user.line, "a user with this id exists"))
                    continue
                user_id = user.id or uuid.uuid4()
                clash = next(
                    (
                        s
                        for s in user.identities
                        if linked.get((s.provider, s.subject), user_id) != user_id
                    ),
                    None,
                )
                if clash is not None or len({s.provider for s in user.identities}) != len(
                    user.identities
                ):
                    reason = "a linked identity belongs to another user or repeats a provider"
                    refused.append(Refusal(user.line, reason))
                    continue
                new_users.append(_insert_row(tenant_id, user_id, user, now))
                for subject in user.identities:
                    links.append(_link_row(tenant_id, user_id, subject, user, now))
                    linked[(subject.provider, subject.subject)] = user_id
                if user.totp_secret is not None:
                    factors.append(
                        {
                            "id": uuid.uuid4(),
                            "tenant_id": tenant_id,
                            "user_id": user_id,
                            "secret": self._sealer.seal(user.totp_secret.encode()),
                            "created_at": now,
                            "confirmed_at": now,
                            "last_used_step": None,
                        }
                    )
            if new_users:
                await conn.execute(insert(t.users), new_users)
            if links:
                await conn.execute(insert(t.external_identities), links)
            if factors:
                await conn.execute(insert(t.totp_factors), factors)
            if updates:
                await conn.execute(
                    update(t.users)
                    .where(u.id == bindparam("_id"))
                    .values({name: bindparam(name) for name in updates[0] if name != "_id"}),
                    updates,
                )
            if dry_run:
                await conn.rollback()
            else:
                await conn.commit()
        return ImportBatchResult(len(new_users) + len(updates), skipped, refused)


def _insert_row(
    tenant_id: UUID, user_id: UUID, user: ImportedUser, now: datetime
) -> dict[str, Any]:
    created = user.created_at or now
    return {
        "id": user_id,
        "tenant_id": tenant_id,
        "email": user.email.value,
        "normalized_email": user.email.key,
        "password_hash": user.password_hash,
        "full_name": user.full_name,
        "is_verified": user.verified,
        "is_active": not user.disabled,
        "verified_at": created if user.verified else None,
        "created_at": created,
        "updated_at": now,
        "last_login_at": None,
        "mfa_enabled": user.totp_secret is not None,
        "identities": ",".join(sorted(s.provider for s in user.identities)) or None,
        "app_metadata": dict(user.app_metadata) if user.app_metadata is not None else None,
        "user_metadata": dict(user.user_metadata) if user.user_metadata is not None else None,
    }


def _update_row(user_id: UUID, user: ImportedUser, now: datetime) -> dict[str, Any]:
    # Linked subjects and factors of an existing user are left as they are.
    return {
        "_id": user_id,
        "password_hash": user.password_hash,
        "full_name": user.full_name,
        "is_verified": user.verified,
        "is_active": not user.disabled,
        "updated_at": now,
        "app_metadata": dict(user.app_metadata) if user.app_metadata is not None else None,
        "user_metadata": dict(user.user_metadata) if user.user_metadata is not None else None,
    }


def _link_row(
    tenant_id: UUID, user_id: UUID, subject: LinkedSubject, user: ImportedUser, now: datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "user_id": user_id,
        "provider": subject.provider,
        "subject": subject.subject,
        "email_at_link": user.email.value,
        "created_at": user.created_at or now,
    }


class SqlImportRunRepository(ImportRunRepository):
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def save(self, run: ImportRun) -> None:
        c = t.user_imports.c
        values = {
            "tenant_id": run.tenant_id,
            "state": run.state.value,
            "total": run.total,
            "imported": run.imported,
            "skipped": run.skipped,
            "failed": run.failed,
            "errors": [{"line": e.line, "reason": e.reason} for e in run.errors],
            "started_at": run.started_at,
            "finished_at": run.finished_at,
        }
        async with self._engine.begin() as conn:
            result = await conn.execute(update(t.user_imports).where(c.id == run.id).values(values))
            if result.rowcount == 0:
                await conn.execute(insert(t.user_imports).values(id=run.id, **values))

    async def get(self, tenant_id: UUID, run_id: UUID) -> ImportRun | None:
        c = t.user_imports.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.user_imports).where(c.id == run_id, c.tenant_id == tenant_id)
                )
            ).first()
        if row is None:
            return None
        return ImportRun(
            id=row.id,
            tenant_id=row.tenant_id,
            started_at=row.started_at,
            state=ImportState(row.state),
            total=row.total,
            imported=row.imported,
            skipped=row.skipped,
            failed=row.failed,
            errors=[Refusal(int(e["line"]), str(e["reason"])) for e in row.errors],
            finished_at=row.finished_at,
        )


class SqlUserExporter(UserExporter):
    """Pages of ``EXPORT_PAGE`` users in id order, with their links and factors."""

    def __init__(self, engine: AsyncEngine, totp_sealer: Sealer) -> None:
        self._engine = engine
        self._sealer = totp_sealer

    def ndjson(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[str]:
        dialect = self._engine.dialect
        if dialect.name == "postgresql" and dialect.driver == "asyncpg":
            return pg_user_imports.export_lines(
                self._engine, self._sealer, tenant_id, with_secrets=with_secrets
            )
        return user_formats.ndjson_chunks(self.export(tenant_id, with_secrets=with_secrets))

    async def export(self, tenant_id: UUID, *, with_secrets: bool) -> AsyncIterator[ImportedUser]:
        u, x, f = t.users.c, t.external_identities.c, t.totp_factors.c
        after: UUID | None = None
        line = 0
        while True:
            query = select(t.users).where(u.tenant_id == tenant_id)
            if after is not None:
                query = query.where(u.id > after)
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query.order_by(u.id).limit(EXPORT_PAGE))).all()
                if not rows:
                    return
                ids = [row.id for row in rows]
                subjects: dict[UUID, list[LinkedSubject]] = {}
                secrets: dict[UUID, str] = {}
                if with_secrets:
                    for link in await conn.execute(
                        # The page is every user of the tenant in [first, last] by id: a
                        # range, not thousands of bound ids to compile.
                        select(x.user_id, x.provider, x.subject)
                        .where(x.tenant_id == tenant_id, x.user_id.between(ids[0], ids[-1]))
                        .order_by(x.provider)  # at most one of each per user
                    ):
                        subjects.setdefault(link.user_id, []).append(
                            LinkedSubject(link.provider, link.subject)
                        )
                    for factor in await conn.execute(
                        select(f.user_id, f.secret).where(
                            f.tenant_id == tenant_id,
                            f.user_id.between(ids[0], ids[-1]),
                            f.confirmed_at.is_not(None),
                        )
                    ):
                        secrets[factor.user_id] = self._sealer.unseal(factor.secret).decode()
            for row in rows:
                line += 1
                yield ImportedUser(
                    line=line,
                    email=Email(row.email),
                    verified=row.is_verified,
                    full_name=row.full_name,
                    created_at=row.created_at,
                    disabled=not row.is_active,
                    password_hash=row.password_hash if with_secrets else None,
                    identities=tuple(subjects.get(row.id, ())),
                    app_metadata=row.app_metadata,
                    user_metadata=row.user_metadata,
                    id=row.id,
                    totp_secret=secrets.get(row.id),
                )
            after = rows[-1].id

    async def metadata(
        self, tenant_id: UUID, user_id: UUID
    ) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]:
        u = t.users.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(u.app_metadata, u.user_metadata).where(
                        u.tenant_id == tenant_id, u.id == user_id
                    )
                )
            ).first()
        return (None, None) if row is None else (row.app_metadata, row.user_metadata)
