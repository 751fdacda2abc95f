"""bcrypt over SHA-256 (Django's ``bcrypt_sha256``), run in a dedicated thread pool."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from typing import Final, TypeVar, TypeVarTuple

import bcrypt

from identity.adapters import foreign_hashes
from identity.application.ports import PasswordHasher

_R = TypeVar("_R")
_Ts = TypeVarTuple("_Ts")

PREFIX: Final = "bcrypt_sha256$"
_COST = re.compile(r"^\$2[abxy]?\$(\d{2})\$")
_MIN_ROUNDS: Final = 4
_MAX_ROUNDS: Final = 31


def make_hasher_executor(max_workers: int | None = None) -> concurrent.futures.ThreadPoolExecutor:
    """A bounded pool only for password hashing (default: one thread per CPU).

    Separate from the loop's default executor so a burst of logins queues here
    instead of starving DNS lookups and other ``to_thread`` work.
    """
    workers = max_workers if max_workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError("the hasher needs at least one worker thread")
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix="password-hasher"
    )


def _prehash(password: str) -> bytes:
    # SHA-256 hex is 64 ASCII bytes: under bcrypt's 72-byte limit (bcrypt 5
    # raises beyond it) and free of NUL bytes. surrogatepass keeps a lone
    # surrogate from JSON from turning into a 500.
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).hexdigest().encode("ascii")


class BcryptSha256Hasher(PasswordHasher):
    """Hashes as ``bcrypt_sha256$<bcrypt hash>``; all bcrypt work runs in ``executor``."""

    def __init__(self, rounds: int, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        if not _MIN_ROUNDS <= rounds <= _MAX_ROUNDS:
            raise ValueError(f"bcrypt rounds must be between {_MIN_ROUNDS} and {_MAX_ROUNDS}")
        self._rounds = rounds
        self._executor = executor
        self._dummy_hash: bytes | None = None
        self._dummy_lock = threading.Lock()

    @property
    def rounds(self) -> int:
        return self._rounds

    async def hash(self, password: str) -> str:
        digest = await self._run(self._hash_sync, password)
        return PREFIX + digest.decode("ascii")

    async def verify(self, password: str, hashed: str) -> bool:
        stored = _bcrypt_part(hashed)
        if stored is None:
            # An imported hash, checked as its own system did until the first
            # sign-in replaces it (``needs_rehash`` is true for it).
            return await self._run(foreign_hashes.check, password, hashed)
        return await self._run(_checkpw, password, stored)

    def refusal(self, hashed: str) -> str | None:
        if hashed.startswith(PREFIX):
            return None if _bcrypt_part(hashed) is not None else "the hash is not ASCII"
        return foreign_hashes.refusal(hashed)

    async def dummy_verify(self, password: str) -> None:
        await self._run(self._dummy_verify_sync, password)

    async def warm_up(self) -> None:
        """Compute the dummy hash now, so the first unknown-email login is not slower."""
        await self._run(self._dummy_hash_sync)

    def needs_rehash(self, hashed: str) -> bool:
        stored = _bcrypt_part(hashed)
        if stored is None:
            return True
        match = _COST.match(stored.decode("ascii"))
        return match is None or int(match.group(1)) != self._rounds

    async def _run(self, func: Callable[[*_Ts], _R], *args: *_Ts) -> _R:
        # Never on the event loop: one bcrypt call blocks its thread for ~0.25 s at cost 12.
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)

    def _hash_sync(self, password: str) -> bytes:
        return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(self._rounds))

    def _dummy_hash_sync(self) -> bytes:
        # Double-checked under a thread lock: computed once, whichever task asks first.
        if self._dummy_hash is None:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    self._dummy_hash = self._hash_sync(
                        base64.b64encode(secrets.token_bytes(18)).decode("ascii")
                    )
        return self._dummy_hash

    def _dummy_verify_sync(self, password: str) -> None:
        _checkpw(password, self._dummy_hash_sync())


def _bcrypt_part(hashed: str) -> bytes | None:
    if not hashed.startswith(PREFIX):
        return None
    try:
        return hashed[len(PREFIX) :].encode("ascii")
    except UnicodeEncodeError:
        return None


def _checkpw(password: str, stored: bytes) -> bool:
    try:
        return bcrypt.checkpw(_prehash(password), stored)
    except ValueError:
        # A malformed stored hash (bad salt, truncated) is a mismatch, not a 500.
        return False
