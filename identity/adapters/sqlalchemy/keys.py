"""Signing keys in the database: created on first start, added by rotation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from identity.adapters.signing_keys import (
    KeyEncryptor,
    KeyRing,
    StoredSigningKey,
    generate_signing_key,
)
from identity.adapters.sqlalchemy.tables import signing_keys


class SigningKeyStore:
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
            await connection.execute(
                insert(signing_keys).values(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    private_key_encrypted=key.private_key_encrypted,
                    public_jwk=key.public_jwk,
                    created_at=key.created_at,
                )
            )
        return key

    async def load_ring(self, now: datetime) -> KeyRing:
        """The key ring, creating the first key when there is none yet."""
        stored = await self.stored()
        if not stored:
            await self.add_new(now)
            stored = await self.stored()
        return KeyRing.load(stored, self._encryptor)
