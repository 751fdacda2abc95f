"""Keyset pages and their cursors, one kind for every list.

A list is read ``limit + 1`` rows at a time in the order of a unique and
immutable (time, id) key, oldest first or newest first. A page says where the
next one starts as a ``Position``; the client sees it as an opaque cursor:
the position base64url encoded. A cursor grants nothing (the tenant and the
scope come from the caller), so it needs no signature; one this API did not
give out is refused with ``InvalidCursorError``, which the edge reports as a
422 on the ``cursor`` field.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

import attrs

from identity.application.ports import Position
from identity.domain.errors import DomainError

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR_LENGTH = 200


class InvalidCursorError(DomainError, ValueError):
    """A list ``cursor`` that this API never handed out."""


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


def encode_cursor(position: Position | None) -> str | None:
    """The cursor of ``position``, as a page's ``next_cursor`` shows it."""
    if position is None:
        return None
    raw = f"{position.created_at.isoformat()}|{position.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position in ``cursor``; ``InvalidCursorError`` when it is not one this API gave out.

    Cursors written with the id's dashed form (as the event and delivery lists
    once did) still read.
    """
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursorError("too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, key = raw.partition("|")
        created_at = datetime.fromisoformat(moment)
        position = Position(created_at, uuid.UUID(hex=key))
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise InvalidCursorError("not a cursor") from error
    if created_at.tzinfo is None:
        raise InvalidCursorError("not a cursor")
    return position
