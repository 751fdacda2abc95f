"""The list cursors as the client sees them: see ``identity.application.pagination``.

Kept for the handlers, which import the codec from here.
"""

from __future__ import annotations

from identity.application.pagination import (
    MAX_CURSOR_LENGTH,
    InvalidCursorError,
    decode_cursor,
    encode_cursor,
)

__all__ = ["MAX_CURSOR_LENGTH", "InvalidCursorError", "decode_cursor", "encode_cursor"]
