"""The server's periodic jobs: failures are survived, cancellation always stops them."""

from __future__ import annotations

import asyncio

import pytest

from identity.entrypoints.http.app import _repeat


async def test_a_failing_job_runs_again() -> None:
    runs = 0
    done = asyncio.Event()

    async def job() -> int:
        nonlocal runs
        runs += 1
        if runs == 3:
            done.set()
        raise RuntimeError("transient")

    task = asyncio.create_task(_repeat("flaky", job, 0.001))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runs >= 3


async def test_a_job_that_turns_cancellation_into_an_error_still_stops() -> None:
    started = asyncio.Event()

    async def job() -> int:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("a library's own error on cancel") from None
        return 0

    task = asyncio.create_task(_repeat("stubborn", job, 0.001))
    await started.wait()
    task.cancel()
    # asyncio.wait, not wait_for: wait_for would wait for a task that never stops.
    await asyncio.wait([task], timeout=2)
    assert task.done() and task.cancelled()
