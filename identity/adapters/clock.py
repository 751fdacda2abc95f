"""The system clock."""

from __future__ import annotations

from datetime import UTC, datetime

from identity.application.ports import Clock


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)
