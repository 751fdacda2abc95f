"""The in-memory store: committed tables, row locks, and the transaction each unit of work runs.

See the package docstring for the semantics. Fakes of every port build their
repositories on ``Table`` over a ``Transaction``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable, Coroutine, Hashable, Iterator
from datetime import datetime
from typing import Any, Generic, ParamSpec, TypeVar, cast
from uuid import UUID

import attrs

from identity.domain.mail import EmailMessage

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")
_R = TypeVar("_R")
_P = ParamSpec("_P")


def _round_trip(
    method: Callable[_P, Coroutine[Any, Any, _R]],
) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """Yield to the event loop once per call, as a database round trip does.

    Without it a whole transaction would run without a suspension point and
    concurrent use cases could never interleave, hiding the races the row
    locks exist for.
    """

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        await asyncio.sleep(0)
        return await method(*args, **kwargs)

    return call


class MemoryIntegrityError(Exception):
    """A primary key inserted twice (the SQL adapter lets its ``IntegrityError`` through)."""


class MemoryDeadlockError(RuntimeError):
    """Waiting for a row lock could never end."""


class MemoryUnitOfWorkClosedError(RuntimeError):
    """A repository was used outside ``async with`` its unit of work."""


@attrs.define
class _OutboxRow:
    id: UUID
    tenant_id: UUID
    message: EmailMessage | None
    address_key: str  # the recipient's lookup key; kept once the message is dropped
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    locked_until: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None


_LockKey = tuple[str, Hashable]


class MemoryStore:
    """The committed data, shared by every unit of work made from it.

    Set ``available`` to False to make new units of work raise
    ``StorageUnavailableError`` (a database that cannot be reached).
    """

    def __init__(self) -> None:
        self.available = True
        self._tables: dict[str, dict[Hashable, object]] = {
            name: {}
            for name in (
                "tenants",
                "accounts",
                "challenges",
                "sessions",
                "invalidated_tokens",
                "outbox",
                "external_identities",
                "oauth_states",
            )
        }
        self._lock_owners: dict[_LockKey, _Transaction] = {}

    def table_names(self) -> list[str]:
        return list(self._tables)

    def table(self, name: str) -> dict[Hashable, object]:
        # Fakes of later ports (their own modules) get their table on first use.
        return self._tables.setdefault(name, {})

    def messages(self, to: str | None = None) -> list[EmailMessage]:
        """Committed outbox messages not yet sent or given up, oldest first."""
        rows = [row for row in self._tables["outbox"].values() if isinstance(row, _OutboxRow)]
        return [
            row.message
            for row in rows
            if row.message is not None and (to is None or row.message.to == to)
        ]

    # --- row locks ---------------------------------------------------------

    async def lock(self, transaction: _Transaction, key: _LockKey) -> None:
        while True:
            owner = self._lock_owners.get(key)
            if owner is None or owner is transaction:
                self._lock_owners[key] = transaction
                transaction.held.add(key)
                transaction.task = asyncio.current_task()
                return
            self._check_deadlock(transaction, owner)
            transaction.waiting_for = owner
            try:
                await owner.finished.wait()
            finally:
                transaction.waiting_for = None

    def try_lock(self, transaction: _Transaction, key: _LockKey) -> bool:
        """Take the lock only if nobody else holds it (``SKIP LOCKED``)."""
        owner = self._lock_owners.get(key)
        if owner is not None and owner is not transaction:
            return False
        self._lock_owners[key] = transaction
        transaction.held.add(key)
        transaction.task = asyncio.current_task()
        return True

    def release(self, transaction: _Transaction) -> None:
        for key in transaction.held:
            if self._lock_owners.get(key) is transaction:
                del self._lock_owners[key]
        transaction.held.clear()

    @staticmethod
    def _check_deadlock(transaction: _Transaction, owner: _Transaction) -> None:
        current = asyncio.current_task()
        if owner.task is not None and owner.task is current:
            raise MemoryDeadlockError(
                "this task already holds the row lock through another unit of work"
            )
        seen: set[int] = set()
        waiting: _Transaction | None = owner
        while waiting is not None and id(waiting) not in seen:
            if waiting is transaction:
                raise MemoryDeadlockError("row locks wait for each other in a cycle")
            seen.add(id(waiting))
            waiting = waiting.waiting_for


class _Transaction:
    """The staged writes and held locks of one transaction of a unit of work."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.writes: dict[str, dict[Hashable, object | None]] = {}
        self.held: set[_LockKey] = set()
        self.finished = asyncio.Event()
        self.task: asyncio.Task[object] | None = None
        self.waiting_for: _Transaction | None = None
        self.open = True

    def ensure_open(self) -> None:
        if not self.open:
            raise MemoryUnitOfWorkClosedError("use the repositories inside 'async with uow'")

    def end(self, *, keep: bool) -> None:
        """Apply (``keep``) or drop the staged writes, release the locks, start afresh."""
        if keep:
            for name, writes in self.writes.items():
                committed = self.store.table(name)
                for key, value in writes.items():
                    if value is None:
                        committed.pop(key, None)
                    else:
                        committed[key] = value
        self.writes.clear()
        self.store.release(self)
        finished, self.finished = self.finished, asyncio.Event()
        finished.set()


class _Table(Generic[_K, _V]):
    """One table as a transaction sees it: committed rows overlaid by its own writes."""

    def __init__(self, transaction: _Transaction, name: str, kind: type[_V]) -> None:
        self._tx = transaction
        self._name = name
        self._kind = kind

    @property
    def transaction(self) -> _Transaction:
        """For a repository that reaches another table in the same transaction."""
        return self._tx

    @property
    def _committed(self) -> dict[Hashable, object]:
        return self._tx.store.table(self._name)

    @property
    def _writes(self) -> dict[Hashable, object | None]:
        return self._tx.writes.setdefault(self._name, {})

    def _cast(self, value: object | None) -> _V | None:
        if value is None:
            return None
        assert isinstance(value, self._kind)
        return value

    def get(self, key: _K) -> _V | None:
        """A private copy of the row, or None."""
        self._tx.ensure_open()
        writes = self._tx.writes.get(self._name, {})
        value = writes[key] if key in writes else self._committed.get(key)
        return copy.deepcopy(self._cast(value))

    def rows(self) -> Iterator[tuple[_K, _V]]:
        """Private copies of every visible row, committed order first."""
        self._tx.ensure_open()
        writes = self._tx.writes.get(self._name, {})
        keys = list(self._committed) + [key for key in writes if key not in self._committed]
        for key in keys:
            value = self._cast(writes[key] if key in writes else self._committed.get(key))
            if value is not None:
                yield cast(_K, key), copy.deepcopy(value)

    def put(self, key: _K, value: _V) -> None:
        """Stage a copy of ``value``; the caller holds the row lock."""
        self._tx.ensure_open()
        self._writes[key] = copy.deepcopy(value)

    def delete(self, key: _K) -> None:
        self._tx.ensure_open()
        self._writes[key] = None

    async def lock(self, key: Hashable, index: str | None = None) -> None:
        self._tx.ensure_open()
        await self._tx.store.lock(self._tx, (index or self._name, key))

    def try_lock(self, key: Hashable) -> bool:
        self._tx.ensure_open()
        return self._tx.store.try_lock(self._tx, (self._name, key))

    async def update_where(
        self, matches: Callable[[_V], bool], change: Callable[[_V], None]
    ) -> int:
        """``UPDATE ... WHERE``: lock each matching row, re-check it, change it."""
        count = 0
        for key, _ in [(key, row) for key, row in self.rows() if matches(row)]:
            await self.lock(key)
            row = self.get(key)
            if row is not None and matches(row):
                change(row)
                self.put(key, row)
                count += 1
        return count

    def delete_where_unlocked(self, matches: Callable[[_V], bool]) -> int:
        """``DELETE ... WHERE`` over the rows nobody else holds (``SKIP LOCKED``)."""
        doomed = [key for key, row in self.rows() if matches(row) and self.try_lock(key)]
        for key in doomed:
            self.delete(key)
        return len(doomed)

    async def delete_where(self, matches: Callable[[_V], bool]) -> int:
        count = 0
        for key, _ in [(key, row) for key, row in self.rows() if matches(row)]:
            await self.lock(key)
            row = self.get(key)
            if row is not None and matches(row):
                self.delete(key)
                count += 1
        return count
