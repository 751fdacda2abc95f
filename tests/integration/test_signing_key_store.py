"""Signing keys in the database: one first key of each ring algorithm (the configured one
and RS256 for ID tokens) however many processes start at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from identity.adapters.memory.keys import MemorySigningKeyStore
from identity.adapters.signing_keys import KeyEncryptor
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.keys import SigningKeyStore
from identity.adapters.sqlalchemy.tables import signing_keys

SECRET = "k" * 40


async def test_processes_starting_together_create_one_first_key(
    migrated_postgres_url: str,
) -> None:
    engines = [make_engine(migrated_postgres_url, pool_size=2) for _ in range(6)]
    stores = [SigningKeyStore(engine, KeyEncryptor(SECRET), "EdDSA") for engine in engines]
    gate = asyncio.Event()

    async def start(store: SigningKeyStore) -> str:
        await gate.wait()
        return (await store.load_ring(datetime.now(UTC))).current.kid

    try:
        tasks = [asyncio.create_task(start(store)) for store in stores]
        await asyncio.sleep(0)  # let every task reach the gate
        gate.set()
        kids = await asyncio.gather(*tasks)
        async with engines[0].connect() as connection:
            count = (
                await connection.execute(select(func.count()).select_from(signing_keys))
            ).scalar_one()
        assert count == 2  # EdDSA, and RS256 beside it
        assert len(set(kids)) == 1
    finally:
        for engine in engines:
            await engine.dispose()


async def test_rotation_adds_a_key_that_signs_while_the_old_one_stays(
    migrated_postgres_url: str,
) -> None:
    engine = make_engine(migrated_postgres_url)
    store = SigningKeyStore(engine, KeyEncryptor(SECRET), "EdDSA")
    try:
        first = (await store.load_ring(datetime.now(UTC))).current.kid
        await store.add_new(datetime.now(UTC))
        ring = await store.load_ring(datetime.now(UTC))
        assert ring.current.kid != first
        assert {key.kid for key in ring.keys} >= {first, ring.current.kid}
    finally:
        await engine.dispose()


async def test_memory_store_creates_one_first_key_and_rotates_like_the_database() -> None:
    store = MemorySigningKeyStore(KeyEncryptor(SECRET), "EdDSA")
    now = datetime.now(UTC)
    rings = await asyncio.gather(*(store.load_ring(now) for _ in range(5)))
    assert len({ring.current.kid for ring in rings}) == 1
    assert sorted(key.algorithm for key in await store.stored()) == ["EdDSA", "RS256"]
    first = rings[0].current.kid
    rs256 = rings[0].current_for("RS256").kid
    rotated = await store.add_new(now + timedelta(seconds=1))
    ring = await store.load_ring(now)
    assert ring.current.kid == rotated.kid != first
    assert ring.current_for("RS256").kid == rs256
    assert {key.kid for key in ring.keys} == {first, rotated.kid, rs256}
