"""Signing keys held in process memory: the key store of the in-memory storage."""

from __future__ import annotations

from datetime import datetime

from identity.adapters.signing_keys import (
    KeyEncryptor,
    KeyRing,
    KeyStore,
    StoredSigningKey,
    generate_signing_key,
    ring_algorithms,
)


class MemorySigningKeyStore(KeyStore):
    """The keys of one process, encrypted as the SQL store keeps them.

    Behaves as ``sqlalchemy.keys.SigningKeyStore``: the first ``load_ring``
    creates one key (one only, however many callers race), ``add_new``
    rotates. Nothing survives the process.
    """

    def __init__(self, encryptor: KeyEncryptor, algorithm: str) -> None:
        self._encryptor = encryptor
        self._algorithm = algorithm
        self._keys: list[StoredSigningKey] = []

    async def stored(self) -> list[StoredSigningKey]:
        return list(self._keys)

    async def add_new(self, now: datetime, algorithm: str | None = None) -> StoredSigningKey:
        key = generate_signing_key(algorithm or self._algorithm, self._encryptor, now)
        self._keys.append(key)
        return key

    async def load_ring(self, now: datetime) -> KeyRing:
        # No await between the check and the append: racing callers make one key each.
        present = {key.algorithm for key in self._keys}
        for algorithm in ring_algorithms(self._algorithm):
            if algorithm not in present:
                self._keys.append(generate_signing_key(algorithm, self._encryptor, now))
        return KeyRing.load(self._keys, self._encryptor, self._algorithm)
