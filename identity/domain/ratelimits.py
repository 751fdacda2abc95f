"""Rate-limit values: the limit itself and the answer to one check."""

from __future__ import annotations

import re

import attrs


@attrs.frozen
class RateLimit:
    """At most ``count`` hits per ``period_seconds`` (a sliding window)."""

    count: int
    period_seconds: float

    def __attrs_post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a rate limit allows at least one request")
        if self.period_seconds <= 0:
            raise ValueError("a rate limit period must be positive")


@attrs.frozen
class RateLimitDecision:
    """The answer to one hit: allowed or not, with the numbers for headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the budget is fully back
    retry_after: float  # seconds until one more hit would be allowed (0 if allowed)


_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_RATE_LIMIT_RE = re.compile(r"([0-9]+)\s*/\s*([0-9]+)?\s*([a-z]+)?", re.IGNORECASE)


def parse_rate_limit(text: str) -> RateLimit:
    """Parse ``"100/minute"``, ``"5/min"``, ``"10/15m"``, ``"20/s"``, ``"2/day"``, ...

    The period is an optional positive multiplier and a unit (s, m, h, d, with
    their long names); a bare number means seconds (``"10/60"``). Raises
    ``ValueError`` naming the problem otherwise.
    """
    match = _RATE_LIMIT_RE.fullmatch(text.strip())
    if match is None or (match.group(2) is None and match.group(3) is None):
        raise ValueError(
            f"invalid rate limit {text!r}: expected COUNT/PERIOD such as "
            "'100/minute', '5/hour' or '10/15m'"
        )
    count_text, multiplier_text, unit = match.groups()
    count = int(count_text)
    if count < 1:
        raise ValueError(f"invalid rate limit {text!r}: the count must be at least 1")
    multiplier = int(multiplier_text) if multiplier_text is not None else 1
    if multiplier < 1:
        raise ValueError(f"invalid rate limit {text!r}: the period must be positive")
    unit_seconds = 1 if unit is None else _UNIT_SECONDS.get(unit.lower())
    if unit_seconds is None:
        raise ValueError(
            f"invalid rate limit {text!r}: unknown unit {unit!r} "
            "(use s, m, h or d, or second, minute, hour, day)"
        )
    return RateLimit(count=count, period_seconds=float(multiplier * unit_seconds))
