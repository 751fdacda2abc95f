"""An in-process wake-up for a background worker (an ``asyncio.Event``)."""

from __future__ import annotations

import asyncio
import contextlib

from identity.application.ports import WorkSignal


class EventWorkSignal(WorkSignal):
    """``notify`` from a request; the worker's ``wait`` returns at once, or after
    ``seconds`` when nothing came (it still polls for other processes' work)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()
