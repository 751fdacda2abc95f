"""Clocks: the system clock, and one that a test moves by hand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from identity.application.ports import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock(Clock):
    """A clock that stands still until it is moved: ``advance(minutes=16)``.

    Starts at the current time (or ``start``). Safe to move from another
    thread than the one reading it: a test's thread moves the clock of a
    server running on its own loop.
    """

    def __init__(self, start: datetime | None = None) -> None:
        moment = start or datetime.now(UTC)
        if moment.tzinfo is None:
            raise ValueError("the start time must be timezone-aware")
        self._now = moment.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def seconds(self) -> float:
        """The current time as seconds since the epoch (for monotonic-style consumers)."""
        return self._now.timestamp()

    def advance(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move forward (never back) and return the new time."""
        step = (delta or timedelta()) + timedelta(
            days=days, hours=hours, minutes=minutes, seconds=seconds
        )
        if step < timedelta():
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, moment: datetime) -> None:
        """Jump to ``moment``, which must not be earlier than now."""
        if moment.tzinfo is None:
            raise ValueError("the time must be timezone-aware")
        with self._lock:
            if moment < self._now:
                raise ValueError("the clock only moves forward")
            self._now = moment.astimezone(UTC)
