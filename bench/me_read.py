"""The cost of the /auth/me hot read (the account's provider names are a column of its
row since migration 0013), against the former read that said whether Google was
linked with an EXISTS subquery.

Runs both statements alternately on one asyncpg connection to a fresh database
(tables from ``identity.adapters.sqlalchemy.tables``), so a busy machine slows
both alike; prints microseconds per execution for each. Usage, from the
repository root::

    PYTHONPATH=. .venv/bin/python bench/me_read.py [--server-url URL] [--runs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import exists
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.reads import _ACCOUNT_FOR_SESSION

USERS = 2000

_GOOGLE_LINKED = (
    exists()
    .where(
        t.external_identities.c.user_id == t.users.c.id,
        t.external_identities.c.provider == "google",
    )
    .label("google_linked")
)
FORMER = _ACCOUNT_FOR_SESSION.with_only_columns(*t.users.c, _GOOGLE_LINKED)


def native(statement: Any) -> tuple[str, list[str], dict[str, Any]]:
    """As the hot read runs it: compiled once, constants bound from the compiled params."""
    compiled = statement.compile(dialect=postgresql.asyncpg.dialect())
    return compiled.string, list(compiled.positiontup), dict(compiled.params)


async def fill(connection: asyncpg.Connection) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]:
    now = datetime.now(UTC)
    tenant = uuid.uuid4()
    await connection.execute(
        "INSERT INTO tenants (id, slug, name, created_at, disabled, settings)"
        " VALUES ($1, 'default', 'Default', $2, false, '{}')",
        tenant,
        now,
    )
    triples = []
    for index in range(USERS):
        user, session = uuid.uuid4(), uuid.uuid4()
        await connection.execute(
            "INSERT INTO users (id, tenant_id, email, normalized_email, is_verified, is_active,"
            " created_at, updated_at) VALUES ($1, $2, $3, $3, true, true, $4, $4)",
            user,
            tenant,
            f"user{index}@example.com",
            now,
        )
        await connection.execute(
            "INSERT INTO sessions (id, tenant_id, user_id, created_at, last_used_at, refresh_jti,"
            " refresh_issued_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5, $4, $6)",
            session,
            tenant,
            user,
            now,
            secrets.token_hex(8),
            now + timedelta(days=1),
        )
        for provider in ("google", "github")[: index % 3]:
            await connection.execute(
                "INSERT INTO external_identities (id, tenant_id, user_id, provider, subject,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                uuid.uuid4(),
                tenant,
                user,
                provider,
                f"{provider}-{index}",
                now,
            )
        triples.append((tenant, session, user))
    await connection.execute("ANALYZE")
    return triples


async def main(server_url: str, runs: int) -> None:
    name = f"identity_bench_me_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        connection = await asyncpg.connect(database_url)
        try:
            dialect = postgresql.asyncpg.dialect()
            for table in t.metadata.sorted_tables:
                await connection.execute(str(CreateTable(table).compile(dialect=dialect)))
                for index in table.indexes:
                    await connection.execute(str(CreateIndex(index).compile(dialect=dialect)))
            triples = await fill(connection)
            statements = {
                "former (google_linked)": native(FORMER),
                "now (identities column)": native(_ACCOUNT_FOR_SESSION),
            }
            timings: dict[str, list[float]] = {label: [] for label in statements}
            for round_ in range(runs):
                tenant, session, user = triples[round_ % len(triples)]
                values = {
                    "tenant_id": tenant,
                    "session_id": session,
                    "account_id": user,
                    "now": datetime.now(UTC),
                }
                for label, (sql, order, constants) in statements.items():
                    arguments = [values[k] if k in values else constants[k] for k in order]
                    started = time.perf_counter()
                    row = await connection.fetchrow(sql, *arguments)
                    timings[label].append(time.perf_counter() - started)
                    assert row is not None
            for label, samples in timings.items():
                samples.sort()
                p99 = samples[int(len(samples) * 0.99)]
                print(
                    f"{label:<24} median {statistics.median(samples) * 1e6:7.1f} us"
                    f"   p99 {p99 * 1e6:7.1f} us   ({len(samples)} runs)"
                )
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--runs", type=int, default=3000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.server_url, arguments.runs))
