"""Parsers of setting values, shared by the environment and the tenant settings.

Each takes the text of a variable (or a stored value) and raises ``ValueError``
with a short reason; the caller prefixes the variable or setting name.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(text: str) -> float:
    """``900`` (seconds), ``15m``, ``30d``, ``10s``, ``250ms``, ``2h`` to seconds; above zero."""
    seconds = parse_duration_or_zero(text)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_duration_or_zero(text: str) -> float:
    """A duration where zero is a legitimate choice (no leeway, no grace window)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError("expected a duration like 900, 30s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return parse


def parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value

    return parse


def parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not any(value.startswith(f"{scheme}://") for scheme in schemes):
            raise ValueError(f"expected a URL starting with {' or '.join(schemes)}://")
        return value

    return parse


def parse_text(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("must not be empty")
    return value
