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

    async def add_new(self, now: datetime) -> StoredSigningKey:
        key = generate_signing_key(self._algorithm, self._encryptor, now)
        async with self._engine.begin() as connection:
            await connection.execute(insert(signing_keys).values(**_row(key)))
        return key

    async def load_ring(self, now: datetime) -> KeyRing:
        """The key ring, creating the first key when there is none yet."""
        stored = await self.stored()
        if not stored:
            await self._add_first(now)
            stored = await self.stored()
        return KeyRing.load(stored, self._encryptor)

    async def _add_first(self, now: datetime) -> None:
        """Hosts starting together create one first key between them, not one each."""
        async with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext('identity:first-signing-key'))")
                )
            if (await connection.execute(select(signing_keys.c.kid).limit(1))).first():
                return
            key = generate_signing_key(self._algorithm, self._encryptor, now)
            await connection.execute(insert(signing_keys).values(**_row(key)))
