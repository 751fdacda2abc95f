"""What a failed insert says about the constraint it broke."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError


def constraint_name(error: IntegrityError) -> str:
    """The violated constraint's name (asyncpg exposes it; SQLite only in the text)."""
    original: Any = getattr(error.orig, "__cause__", None) or error.orig
    name = getattr(original, "constraint_name", None)
    return str(name) if name else str(error.orig)
