"""Keyset pages: a list is read ``limit + 1`` rows at a time, ordered by (created_at, id)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from identity.application.ports import Position

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@attrs.frozen
class Page(Generic[T]):
    """One page of a list; ``next`` is where the following page starts, None at the end."""

    items: list[T]
    next: Position | None = None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page([convert(item) for item in self.items], self.next)


def page_of(rows: list[T], limit: int, key: Callable[[T], tuple[datetime, UUID]]) -> Page[T]:
    """``rows`` were read with ``limit + 1``: the extra row only says that more follow."""
    if len(rows) <= limit:
        return Page(rows)
    items = rows[:limit]
    created_at, row_id = key(items[-1])
    return Page(items, Position(created_at, row_id))
