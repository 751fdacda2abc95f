"""Importing users from another system and exporting them: streamed, batched, idempotent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, Callable
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from identity.application.ports import (
    Clock,
    ImportRunRepository,
    PasswordHasher,
    UnitOfWorkFactory,
    UserImportWriter,
)
from identity.domain.events import EventType, SecurityEvent
from identity.domain.imports import ImportedUser, ImportRun, OnConflict, Refusal

# A batch is one transaction. Small ones keep each burst of the database's work, and
# the import's WAL that a concurrent sign-in's commit has to flush with its own,
# short: on Postgres, sign-in p99 during a 1M-user import went from 3.2x to about
# 1.6x of quiet going from 5,000 to 500, for a tenth more import time (bench/import.py).
DEFAULT_BATCH_SIZE = 500
# The run's stored progress (GET /admin/imports/{id}) is written at most this often,
# not after every batch: a write is three statements on the import's connection.
PROGRESS_EVERY = timedelta(seconds=1)


@attrs.frozen
class ImportUsers:
    """One run: records from one source into one tenant."""

    tenant_id: UUID
    records: AsyncIterable[ImportedUser | Refusal]
    on_conflict: OnConflict = OnConflict.SKIP
    dry_run: bool = False
    run_id: UUID = attrs.field(factory=uuid.uuid4)
    batch_size: int = DEFAULT_BATCH_SIZE
    # Told of every refused record (the report file) and of each batch's end (progress).
    on_refusal: Callable[[Refusal], None] | None = None
    on_progress: Callable[[ImportRun], None] | None = None


class RunImport:
    """Reads the source as a stream and writes it in batches of one transaction each.

    Memory stays bounded: one batch of records, plus one integer per email seen
    (to refuse a second record of the same address in the same source).
    Re-running the same source imports nothing twice: the email per tenant (and
    a kept id) is the key, and ``on_conflict`` says what a taken key does.
    """

    def __init__(
        self,
        writer: UserImportWriter,
        runs: ImportRunRepository | None,
        hasher: PasswordHasher,
        clock: Clock,
        uow: UnitOfWorkFactory,
    ) -> None:
        self._writer = writer
        self._runs = runs
        self._hasher = hasher
        self._clock = clock
        self._uow = uow

    async def begin(self, command: ImportUsers) -> ImportRun:
        """Record the run as running now (before it reads anything), so its id can be
        read at once; ``__call__`` with the same command then does the work."""
        run = ImportRun(
            id=command.run_id, tenant_id=command.tenant_id, started_at=self._clock.now()
        )
        if self._runs is not None:
            await self._runs.save(run)
        return run

    async def __call__(self, command: ImportUsers) -> ImportRun:
        now = self._clock.now()
        run = ImportRun(id=command.run_id, tenant_id=command.tenant_id, started_at=now)
        if self._runs is not None:
            await self._runs.save(run)
        saved_at = [now]  # when the run's progress was last stored
        seen: set[int] = set()
        batch: list[ImportedUser] = []
        refused: list[Refusal] = []
        # A batch is written before the next one is read, not while: on two cores the
        # overlap made a million-user import no faster, and it let the import (its
        # parsing and its database backend) take both cores from a live service's
        # sign-ins (p99 during the import about 1.9x quiet with it, 1.5x without).
        try:
            async for record in command.records:
                if isinstance(record, Refusal):
                    refused.append(record)
                else:
                    reason = self._problem(record, seen)
                    if reason is None:
                        batch.append(record)
                    else:
                        refused.append(Refusal(record.line, reason))
                if len(batch) >= command.batch_size or len(refused) >= command.batch_size:
                    await self._flush(command, run, batch, refused, saved_at)
                    batch, refused = [], []
            await self._flush(command, run, batch, refused, saved_at)
        except BaseException:
            run.finish(self._clock.now(), failed=True)
            if self._runs is not None:
                await asyncio.shield(self._runs.save(run))
            raise
        run.finish(self._clock.now())
        if not command.dry_run:
            await self._record_event(run)
        if self._runs is not None:
            await self._runs.save(run)
        return run

    def _problem(self, record: ImportedUser, seen: set[int]) -> str | None:
        if record.password_hash is not None:
            reason = self._hasher.refusal(record.password_hash)
            if reason is not None:
                return reason
        key = hash(record.email.key)
        if key in seen:
            return "the email address appears in an earlier record of this source"
        seen.add(key)
        return None

    async def _flush(
        self,
        command: ImportUsers,
        run: ImportRun,
        batch: list[ImportedUser],
        refused: list[Refusal],
        saved_at: list[datetime],
    ) -> None:
        imported = skipped = 0
        if batch:
            result = await self._writer.write(
                command.tenant_id,
                batch,
                command.on_conflict,
                self._clock.now(),
                dry_run=command.dry_run,
            )
            imported, skipped = result.imported, result.skipped
            refused = sorted([*refused, *result.refused], key=lambda r: r.line)
        if not batch and not refused:
            return
        run.count(imported, skipped, refused)
        if command.on_refusal is not None:
            for refusal in refused:
                command.on_refusal(refusal)
        now = self._clock.now()
        if self._runs is not None and now - saved_at[0] >= PROGRESS_EVERY:
            saved_at[0] = now
            await self._runs.save(run)
        if command.on_progress is not None:
            command.on_progress(run)

    async def _record_event(self, run: ImportRun) -> None:
        async with self._uow() as uow:
            await uow.events.add(
                SecurityEvent.new(
                    EventType.USERS_IMPORTED,
                    run.tenant_id,
                    self._clock.now(),
                    import_id=str(run.id),
                    imported=run.imported,
                    skipped=run.skipped,
                    failed=run.failed,
                )
            )
            await uow.commit()
