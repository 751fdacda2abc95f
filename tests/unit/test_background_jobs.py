"""The server's periodic jobs: failures are survived; a stop ends them between runs,
and cancellation always stops them."""

from __future__ import annotations

import asyncio
import logging

import pytest

from identity.domain.errors import StorageUnavailableError
from identity.entrypoints.http.app import MAX_BACKOFF_SECONDS, _repeat, backoff


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


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes: list[Exception] = [StorageUnavailableError("down")] * 5
    pauses: list[float] = []
    recovered = asyncio.Event()

    async def job() -> int:
        if outcomes:
            raise outcomes.pop(0)
        recovered.set()
        return 0

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    caplog.set_level(logging.INFO, logger="identity.server")
    task = asyncio.create_task(_repeat("outbox", job, 0.5, sleep=sleep))
    await asyncio.wait_for(recovered.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    records = [r for r in caplog.records if getattr(r, "job", None) == "outbox"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"]
    assert "database unavailable" in records[0].getMessage()
    assert records[0].exc_info is None  # one line, no traceback
    assert records[1].getMessage() == "background job recovered"
    assert pauses[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 0.5]


async def test_an_unexpected_failure_is_logged_with_its_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = 0
    enough = asyncio.Event()

    async def job() -> int:
        nonlocal runs
        runs += 1
        if runs == 4:
            enough.set()
        raise RuntimeError("a bug")

    async def sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    task = asyncio.create_task(_repeat("purge", job, 600, sleep=sleep))
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    errors = [r for r in caplog.records if getattr(r, "job", None) == "purge"]
    assert len(errors) == 1 and errors[0].exc_info is not None


async def test_a_stop_lets_the_run_in_progress_finish_and_ends_the_loop() -> None:
    in_run, may_finish, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    finished = 0

    async def job() -> int:
        nonlocal finished
        in_run.set()
        await may_finish.wait()
        finished += 1
        return 1  # "more may be waiting": without the stop it would run again at once

    task = asyncio.create_task(_repeat("outbox", job, 600, stop=stop, busy_again=True))
    await in_run.wait()
    stop.set()
    may_finish.set()
    await asyncio.wait_for(task, 5)

    assert not task.cancelled() and task.exception() is None
    assert finished == 1


async def test_a_stop_cuts_the_pause_short() -> None:
    pausing, stop = asyncio.Event(), asyncio.Event()
    pauses: list[float] = []

    async def job() -> int:
        return 0

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        pausing.set()
        await asyncio.Event().wait()  # a pause that would never end by itself

    task = asyncio.create_task(_repeat("purge", job, 600, stop=stop, sleep=sleep))
    await pausing.wait()
    stop.set()
    await asyncio.wait_for(task, 5)

    assert task.exception() is None and pauses == [600]


async def test_every_run_is_reported_with_its_outcome() -> None:
    outcomes: list[Exception | None] = [RuntimeError("transient"), None, None]
    reports: list[tuple[str, bool]] = []
    stop = asyncio.Event()

    async def job() -> int:
        outcome = outcomes.pop(0)
        if not outcomes:
            stop.set()
        if outcome is not None:
            raise outcome
        return 0

    async def sleep(_seconds: float) -> None:
        await asyncio.sleep(0)

    def ran(name: str, ok: bool) -> None:
        reports.append((name, ok))

    await asyncio.wait_for(_repeat("outbox", job, 0.5, stop=stop, sleep=sleep, ran=ran), 5)

    assert reports == [("outbox", False), ("outbox", True), ("outbox", True)]


def test_the_backoff_doubles_and_is_bounded() -> None:
    assert [backoff(0.5, n) for n in range(4)] == [0.5, 0.5, 1.0, 2.0]
    assert backoff(0.5, 50) == MAX_BACKOFF_SECONDS
    assert backoff(600, 3) == 600  # a slow job never waits less than its period
