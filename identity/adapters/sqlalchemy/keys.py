"""Signing keys in the database: created on first start, added by rotation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.signing_keys import (
    KeyEncryptor,
    KeyRing,
    KeyStore,
    StoredSigningKey,
    generate_signing_key,
    ring_algorithms,
)
from identity.adapters.sqlalchemy.tables import signing_keys


def _row(key: StoredSigningKey) -> dict[str, Any]:
    return {
        "kid": key.kid,
        "algorithm": key.algorithm,
        "private_key_encrypted": key.private_key_encrypted,
        "public_jwk": key.public_jwk,
        "created_at": key.created_at,
    }


class SigningKeyStore(KeyStore):
    def __init__(self, engine: AsyncEngine, encryptor: KeyEncryptor, algorithm: str) -> None:
        self._engine = engine
        self._encryptor = encryptor
        self._algorithm = algorithm

    async def stored(self) -> list[StoredSigningKey]:
        async with self._engine.connect() as connection:
            rows = await connection.execute(select(signing_keys))
            return [
                StoredSigningKey(
                    kid=row.kid,
                    algorithm=row.algorithm,
                    private_key_encrypted=bytes(row.private_key_encrypted),
                    public_jwk=dict(row.public_jwk),
                    created_at=row.created_at,
                )
                for row in rows
            ]

    async def add_new(self, now: datetime, algorithm: str | None = None) -> StoredSigningKey:
        key = generate_signing_key(algorithm or self._algorithm, self._encryptor, now)
        async with self._engine.begin() as connection:
            await connection.execute(insert(signing_keys).values(**_row(key)))
        return key

    async def load_ring(self, now: datetime) -> KeyRing:
        """The key ring, creating the first key of each ring algorithm when missing."""
        stored = await self.stored()
        wanted = ring_algorithms(self._algorithm)
        if not set(wanted) <= {key.algorithm for key in stored}:
            await self._add_first(now, wanted)
            stored = await self.stored()
        return KeyRing.load(stored, self._encryptor, self._algorithm)

    async def _add_first(self, now: datetime, algorithms: tuple[str, ...]) -> None:
        """Hosts starting together create one first key of each algorithm between them."""
        async with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext('identity:first-signing-key'))")
                )
            present = set((await connection.execute(select(signing_keys.c.algorithm))).scalars())
            for algorithm in algorithms:
                if algorithm not in present:
                    key = generate_signing_key(algorithm, self._encryptor, now)
                    await connection.execute(insert(signing_keys).values(**_row(key)))
