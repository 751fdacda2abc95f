"""Whether the database answers, probed at most once a second however often asked."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_PING = text("SELECT 1")


class DatabaseProbe:
    """``/health`` is polled by load balancers many times a second: one round trip
    per poll would cost more than the answer. A result is reused while it is at
    most ``max_age`` seconds old; concurrent callers share one probe in flight;
    a hanging database answers ``False`` after ``timeout`` seconds, however long
    the probe then takes to give up its connection.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_age: float = 1.0,
        timeout: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._max_age = max_age
        self._timeout = timeout
        self._clock = clock
        self._result = False
        self._observed_at: float | None = None
        self._in_flight: asyncio.Task[bool] | None = None

    async def ok(self) -> bool:
        observed_at = self._observed_at
        if observed_at is not None and self._clock() - observed_at <= self._max_age:
            return self._result
        probe = self._in_flight
        if probe is None:
            probe = self._in_flight = asyncio.create_task(self._probe())
        # Waited on, never awaited: a caller that gives up does not cancel the
        # probe the others wait on, and the answer keeps its deadline even when
        # the probe itself overruns (tearing down a connection to a hung server
        # under cancellation takes seconds more, and SQLAlchemy sees it through).
        done, _ = await asyncio.wait({probe}, timeout=self._timeout)
        return probe.result() if done else False

    async def _probe(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout):
                await self._ping()
            result = True
        except Exception:
            result = False
        self._result, self._observed_at, self._in_flight = result, self._clock(), None
        return result

    async def _ping(self) -> None:
        async with self._engine.connect() as connection:
            # One round trip: no BEGIN/ROLLBACK around the probe.
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await connection.execute(_PING)
