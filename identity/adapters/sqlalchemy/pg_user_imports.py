"""Bulk import and export on Postgres, straight on the engine's asyncpg connection.

The hot path of a million-user import: a batch is one transaction of one
binary ``COPY`` per table, with users built as tuples and ids made in bulk
from one ``os.urandom`` call; taken keys are looked up (one array of keys per
kind, each probed through its unique index) only when a batch clashes. The
export builds each NDJSON line in the server and streams it through a cursor
in one read-only transaction (one snapshot). Both do record for record what
the generic path in ``user_imports.py`` does, which SQLite uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.sealing import Sealer
from identity.application.ports import ImportBatchResult
from identity.domain.imports import ImportedUser, OnConflict, Refusal

_USER_COLUMNS = (
    "id",
    "tenant_id",
    "email",
    "normalized_email",
    "password_hash",
    "full_name",
    "is_verified",
    "is_active",
    "verified_at",
    "created_at",
    "updated_at",
    "mfa_enabled",
    "identities",
    "app_metadata",
    "user_metadata",
)
_LINK_COLUMNS = (
    "id",
    "tenant_id",
    "user_id",
    "provider",
    "subject",
    "email_at_link",
    "created_at",
)
_FACTOR_COLUMNS = ("id", "tenant_id", "user_id", "secret", "created_at", "confirmed_at")

# Each key is looked up on its own through the unique index (a LATERAL subquery with
# LIMIT is not flattened into a join): with the keys as one ``= ANY(array)`` the planner
# took a scan of all the tenant's users, each batch slower than the last. Custom plans,
# so that no plan made while the table was small stays while it grows.
# One round trip opens the batch: a batch lost to a crash is written again by the
# re-run (idempotent), so no waiting for its WAL flush.
_BEGIN = (
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "SET LOCAL plan_cache_mode = force_custom_plan; SAVEPOINT batch"
)
_TAKEN = (
    "SELECT k.key, u.id FROM unnest($2::varchar[]) AS k(key) CROSS JOIN LATERAL ("
    "SELECT id FROM users WHERE tenant_id = $1 AND normalized_email = k.key LIMIT 1) u"
)
_USED_IDS = (
    "SELECT u.id FROM unnest($1::uuid[]) AS k(id) "
    "CROSS JOIN LATERAL (SELECT id FROM users WHERE id = k.id LIMIT 1) u"
)
_LINKED = (
    "SELECT s.provider, s.subject, x.user_id "
    "FROM unnest($2::varchar[], $3::varchar[]) AS s(provider, subject) "
    "CROSS JOIN LATERAL (SELECT user_id FROM external_identities WHERE tenant_id = $1 "
    "AND provider = s.provider AND subject = s.subject LIMIT 1) x"
)
_UPDATE = (
    "UPDATE users SET password_hash = $2, full_name = $3, is_verified = $4, is_active = $5, "
    "updated_at = $6, app_metadata = $7::json, user_metadata = $8::json WHERE id = $1"
)
_V7 = bytes((byte & 0x0F) | 0x70 for byte in range(256))
_VARIANT = bytes((byte & 0x3F) | 0x80 for byte in range(256))


def new_ids(count: int) -> list[str]:
    """``count`` version-7 UUIDs (RFC 9562: the time in milliseconds, then 74 random
    bits) as 32 hex digits, which asyncpg takes as they are. A batch's users then go
    into the rightmost pages of the primary key's index rather than all over it: a
    fifth less WAL and work for the server per user than with random (version 4)
    ids. One ``os.urandom`` call for all."""
    raw = bytearray(os.urandom(16 * count))
    stamp = time.time_ns() // 1_000_000
    raw[0::16] = bytes([(stamp >> 40) & 0xFF]) * count
    raw[1::16] = bytes([(stamp >> 32) & 0xFF]) * count
    raw[2::16] = bytes([(stamp >> 24) & 0xFF]) * count
    raw[3::16] = bytes([(stamp >> 16) & 0xFF]) * count
    raw[4::16] = bytes([(stamp >> 8) & 0xFF]) * count
    raw[5::16] = bytes([stamp & 0xFF]) * count
    raw[6::16] = bytes(raw[6::16]).translate(_V7)
    raw[8::16] = bytes(raw[8::16]).translate(_VARIANT)
    text = raw.hex()
    return [text[i : i + 32] for i in range(0, 32 * count, 32)]


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


# The tables' statistics are renewed when the users written since the last ANALYZE
# outnumber those it counted. Autovacuum comes later (a minute or more, behind the
# import): until then every prepared statement of the server keeps the plan made for
# a small table, a sign-in's email lookup included, which became a scan of the
# growing table (sign-in p99 went from 45 to 540 ms while 200,000 users came in).
CHECK_GROWTH_EVERY = 20_000
MIN_ROWS_TO_ANALYZE = 10_000
_COUNTED = "SELECT reltuples FROM pg_class WHERE oid = 'users'::regclass"
_ANALYZE = "ANALYZE users, external_identities, totp_factors"


class PgImportBatches:
    """Writes batches on one asyncpg connection each (see ``SqlUserImportWriter``).

    A batch is first written as if all its users were new (no lookups), inside a
    savepoint: a unique violation rolls back to it and the batch is written again
    after looking its keys up. After a batch that met stored users, the next ones
    look up first, until one meets none (a re-run skips lookups no more than once).
    """

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._expect_new = True
        self._unchecked = 0  # users written since the tables' growth was last checked
        self._unanalyzed = 0  # users written since this writer's last ANALYZE

    async def write(
        self,
        pg: asyncpg.Connection,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        *,
        dry_run: bool,
    ) -> ImportBatchResult:
        """One transaction; a unique violation that looking up cannot explain (a row
        stored meanwhile, a kept id twice) propagates, for the caller to write the
        batch again user by user."""
        await pg.execute(_BEGIN)
        try:
            result = None
            if self._expect_new:
                try:
                    result = await self._write(pg, tenant_id, users, on_conflict, now, False)
                except asyncpg.UniqueViolationError:
                    await pg.execute("ROLLBACK TO SAVEPOINT batch")
            if result is None:
                result = await self._write(pg, tenant_id, users, on_conflict, now, True)
            await pg.execute("ROLLBACK" if dry_run else "COMMIT")
        except BaseException:
            # A broken or busy (cancelled mid-COPY) connection cannot roll back; the
            # pool resets or discards it. The first error is the one to raise.
            with contextlib.suppress(Exception):
                await pg.execute("ROLLBACK")
            raise
        if not dry_run:
            self._unchecked += result.imported
            self._unanalyzed += result.imported
        if self._unchecked >= CHECK_GROWTH_EVERY:
            self._unchecked = 0
            counted = await pg.fetchval(_COUNTED)
            if self._unanalyzed > max(counted or 0, MIN_ROWS_TO_ANALYZE):
                self._unanalyzed = 0
                try:
                    await pg.execute(_ANALYZE)
                except asyncpg.InsufficientPrivilegeError:
                    pass  # not the tables' owner: autovacuum will do it
        return result

    async def _write(
        self,
        pg: asyncpg.Connection,
        tenant_id: UUID,
        users: Sequence[ImportedUser],
        on_conflict: OnConflict,
        now: datetime,
        look_up: bool,
    ) -> ImportBatchResult:
        taken: dict[str, UUID] = {}
        used: set[UUID] = set()
        linked: dict[tuple[str, str], Any] = {}
        if look_up:
            taken = dict(await pg.fetch(_TAKEN, tenant_id, [user.email.key for user in users]))
            kept = [user.id for user in users if user.id is not None]
            if kept:
                used = {row[0] for row in await pg.fetch(_USED_IDS, kept)}
            subjects = [s for user in users for s in user.identities]
            if subjects:
                rows = await pg.fetch(
                    _LINKED,
                    tenant_id,
                    [s.provider for s in subjects],
                    [s.subject for s in subjects],
                )
                linked = {(row[0], row[1]): row[2] for row in rows}
            self._expect_new = not taken and not used and not linked
        return await _copy_batch(
            pg, self._sealer, tenant_id, users, on_conflict, now, taken, used, linked
        )


async def _copy_batch(
    pg: asyncpg.Connection,
    sealer: Sealer,
    tenant_id: UUID,
    users: Sequence[ImportedUser],
    on_conflict: OnConflict,
    now: datetime,
    taken: dict[str, UUID],
    used: set[UUID],
    linked: dict[tuple[str, str], Any],
) -> ImportBatchResult:
    ids = new_ids(len(users))
    records: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    factors: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    refused: list[Refusal] = []
    skipped = 0
    for index, user in enumerate(users):
        email = user.email
        key = email.key
        if taken:
            existing = taken.get(key)
            if existing is not None:
                if on_conflict is OnConflict.SKIP:
                    skipped += 1
                elif on_conflict is OnConflict.FAIL:
                    refused.append(Refusal(user.line, "a user with this email exists"))
                else:
                    updates.append(
                        (
                            existing,
                            user.password_hash,
                            user.full_name,
                            user.verified,
                            not user.disabled,
                            now,
                            _json(user.app_metadata),
                            _json(user.user_metadata),
                        )
                    )
                continue
        user_id: Any = ids[index]
        if user.id is not None:
            if user.id in used:
                if on_conflict is OnConflict.SKIP:
                    skipped += 1
                else:
                    refused.append(Refusal(user.line, "a user with this id exists"))
                continue
            user_id = user.id
        created = user.created_at or now
        providers = None
        if user.identities:
            if len({s.provider for s in user.identities}) != len(user.identities) or any(
                linked.get((s.provider, s.subject), user_id) != user_id for s in user.identities
            ):
                reason = "a linked identity belongs to another user or repeats a provider"
                refused.append(Refusal(user.line, reason))
                continue
            providers = ",".join(sorted(s.provider for s in user.identities))
            link_ids = new_ids(len(user.identities))
            for subject, link_id in zip(user.identities, link_ids, strict=True):
                links.append(
                    (
                        link_id,
                        tenant_id,
                        user_id,
                        subject.provider,
                        subject.subject,
                        email.value,
                        created,
                    )
                )
                linked[(subject.provider, subject.subject)] = user_id
        if user.totp_secret is not None:
            secret = sealer.seal(user.totp_secret.encode())
            factors.append((new_ids(1)[0], tenant_id, user_id, secret, now, now))
        records.append(
            (
                user_id,
                tenant_id,
                email.value,
                key,
                user.password_hash,
                user.full_name,
                user.verified,
                not user.disabled,
                created if user.verified else None,
                created,
                now,
                user.totp_secret is not None,
                providers,
                None if user.app_metadata is None else json.dumps(user.app_metadata),
                None if user.user_metadata is None else json.dumps(user.user_metadata),
            )
        )
    if records:
        await pg.copy_records_to_table("users", records=records, columns=_USER_COLUMNS)
    if links:
        await pg.copy_records_to_table("external_identities", records=links, columns=_LINK_COLUMNS)
    if factors:
        await pg.copy_records_to_table("totp_factors", records=factors, columns=_FACTOR_COLUMNS)
    if updates:
        await pg.executemany(_UPDATE, updates)
    return ImportBatchResult(len(records) + len(updates), skipped, refused)


# --- export ------------------------------------------------------------------------

# One line of the identity format per user, made by the server (what
# ``user_formats.to_identity`` makes, keys in the same order). The TOTP secret is
# sealed with this deployment's key: it comes apart and is opened here.
_LINE = """
SELECT '{"id":' || to_json(u.id::text)::text
    || ',"email":' || to_json(u.email)::text
    || ',"email_verified":' || CASE WHEN u.is_verified THEN 'true' ELSE 'false' END
    || ',"full_name":' || COALESCE(to_json(u.full_name)::text, 'null')
    || ',"created_at":' || COALESCE(to_json(u.created_at)::text, 'null')
    || ',"disabled":' || CASE WHEN u.is_active THEN 'false' ELSE 'true' END
    || ',"app_metadata":' || COALESCE(u.app_metadata::jsonb::text, 'null')
    || ',"user_metadata":' || COALESCE(u.user_metadata::jsonb::text, 'null')
    {columns}
FROM users u {joins}
WHERE u.tenant_id = $1 ORDER BY u.id
"""
_SECRET_COLUMNS = """
    || CASE WHEN u.password_hash IS NULL THEN ''
       ELSE ',"password_hash":' || to_json(u.password_hash)::text END
    || COALESCE(',"identities":' || x.identities, '') AS line,
    f.secret
"""
_SECRET_JOINS = """
LEFT JOIN (
    SELECT user_id, json_agg(json_build_object('provider', provider, 'subject', subject)
                             ORDER BY provider)::text AS identities
    FROM external_identities WHERE tenant_id = $1 GROUP BY user_id
) x ON x.user_id = u.id
LEFT JOIN totp_factors f ON f.user_id = u.id AND f.confirmed_at IS NOT NULL
"""
EXPORT_PREFETCH = 5000


async def export_lines(
    engine: AsyncEngine, sealer: Sealer, tenant_id: UUID, *, with_secrets: bool
) -> AsyncIterator[str]:
    """NDJSON chunks (many lines each) of the tenant's users, in id order."""
    columns, joins = (_SECRET_COLUMNS, _SECRET_JOINS) if with_secrets else ("AS line", "")
    query = _LINE.replace("{columns}", columns).replace("{joins}", joins)
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg: asyncpg.Connection = raw.driver_connection
        transaction = pg.transaction(isolation="repeatable_read", readonly=True)
        await transaction.start()
        try:
            await pg.execute("SET LOCAL TimeZone = 'UTC'")
            chunk: list[str] = []
            async for row in pg.cursor(query, tenant_id, prefetch=EXPORT_PREFETCH):
                line: str = row[0]
                if with_secrets and row[1] is not None:
                    secret = sealer.unseal(row[1]).decode()
                    line = f'{line},"totp":{{"secret":{json.dumps(secret)}}}'
                chunk.append(line)
                chunk.append("}\n")
                if len(chunk) >= 2 * EXPORT_PREFETCH:
                    yield "".join(chunk)
                    chunk = []
            if chunk:
                yield "".join(chunk)
        finally:
            await transaction.rollback()
