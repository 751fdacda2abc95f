"""The /health database probe: a result reused for a second, one probe in flight."""

from __future__ import annotations

import asyncio
from typing import Any

from identity.adapters.sqlalchemy.health import DatabaseProbe


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ScriptedProbe(DatabaseProbe):
    """Pings nothing: each ping waits for ``gate`` (when set) and fails while ``down``;
    a ping cancelled meanwhile first waits for ``teardown`` (when set), the way
    SQLAlchemy sees a connection's cleanup through under cancellation."""

    def __init__(self, clock: FakeClock, **kwargs: Any) -> None:
        super().__init__(engine=None, clock=clock, **kwargs)  # type: ignore[arg-type]
        self.pings = 0
        self.down = False
        self.gate: asyncio.Event | None = None
        self.teardown: asyncio.Event | None = None

    async def _ping(self) -> None:
        self.pings += 1
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                if self.teardown is not None:
                    await self.teardown.wait()
                raise
        if self.down:
            raise ConnectionRefusedError("down")


async def test_a_result_is_reused_for_at_most_a_second() -> None:
    clock = FakeClock()
    probe = ScriptedProbe(clock)

    assert await probe.ok()
    probe.down = True
    clock.now += 0.9
    assert await probe.ok()  # still the result of 0.9 s ago
    assert probe.pings == 1
    clock.now += 0.2
    assert not await probe.ok()  # older than a second: probed again
    assert probe.pings == 2


async def test_concurrent_callers_share_one_probe() -> None:
    probe = ScriptedProbe(FakeClock())
    probe.gate = asyncio.Event()

    waiting = [asyncio.create_task(probe.ok()) for _ in range(20)]
    await asyncio.sleep(0)  # let every caller reach the shared probe
    probe.gate.set()
    results = await asyncio.gather(*waiting)

    assert results == [True] * 20
    assert probe.pings == 1


async def test_a_hanging_database_is_unavailable_after_the_timeout() -> None:
    probe = ScriptedProbe(FakeClock(), timeout=0.05)
    probe.gate = asyncio.Event()  # never set: the ping hangs

    assert not await asyncio.wait_for(probe.ok(), 2)


async def test_the_answer_keeps_its_deadline_when_the_probe_overruns_it() -> None:
    probe = ScriptedProbe(FakeClock(), timeout=0.05)
    probe.gate, probe.teardown = asyncio.Event(), asyncio.Event()  # hangs, then slow to give up

    assert not await asyncio.wait_for(probe.ok(), 2)
    assert not await asyncio.wait_for(probe.ok(), 2)  # still in flight: the same bounded wait
    assert probe.pings == 1

    in_flight = probe._in_flight
    assert in_flight is not None
    probe.teardown.set()
    assert await asyncio.wait_for(in_flight, 2) is False
    assert not await probe.ok()  # the probe's own verdict, reused
    assert probe.pings == 1


async def test_a_caller_giving_up_does_not_cancel_the_probe_of_the_others() -> None:
    probe = ScriptedProbe(FakeClock())
    probe.gate = asyncio.Event()
    impatient = asyncio.create_task(probe.ok())
    patient = asyncio.create_task(probe.ok())
    await asyncio.sleep(0)

    impatient.cancel()
    probe.gate.set()

    assert await patient is True
