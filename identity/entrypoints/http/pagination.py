"""Opaque list cursors: where the next keyset page starts, as the client sees it.

A cursor is only a position in the list's (created_at, id) order, base64url
encoded: it grants nothing (the tenant and scope come from the caller's
key), so it needs no signature; a malformed one is a 422.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from identity.application.ports import Position

MAX_CURSOR_LENGTH = 200


def encode_cursor(position: Position | None) -> str | None:
    if position is None:
        return None
    raw = f"{position.created_at.isoformat()}|{position.id.hex}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position in ``cursor``; ``ValueError`` when it is not one this API gave out."""
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValueError("too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, _, key = raw.partition("|")
        created_at = datetime.fromisoformat(moment)
        position = Position(created_at, uuid.UUID(hex=key))
    except (binascii.Error, UnicodeDecodeError, ValueError) as error:
        raise ValueError("not a cursor") from error
    if created_at.tzinfo is None:
        raise ValueError("not a cursor")
    return position
