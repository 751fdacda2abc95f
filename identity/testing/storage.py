"""Storage of a test server that lives outside it: a throwaway Postgres container,
and blocking set-up work (migrations) kept off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

POSTGRES_IMAGE: Final = "postgres:16-alpine"

T = TypeVar("T")


class TestServerError(RuntimeError):
    """The test server cannot start as asked; the message says what to pass instead."""

    __test__ = False


def start_postgres_container() -> tuple[Any, str]:
    """A testcontainers Postgres and its URL; a clear error without a container engine."""
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        try:  # testcontainers before the "community" modules
            from testcontainers.postgres import PostgresContainer
        except ImportError:
            raise TestServerError(
                "storage='testcontainers' needs the testcontainers package: "
                "pip install 'identity[testing]'"
            ) from None
    container = None
    try:
        # The docker client looks for the engine as soon as the container is made.
        container = PostgresContainer(POSTGRES_IMAGE, driver="asyncpg")
        container.start()
    except Exception as error:
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        raise TestServerError(
            "storage='testcontainers' needs a running container engine (Docker or a "
            f"Docker-compatible one) and none answered ({type(error).__name__}). Pass "
            "storage='memory' or storage='sqlite', or storage='postgres' with "
            "database_url='postgresql+asyncpg://...'"
        ) from None
    return container, str(container.get_connection_url())


async def in_thread(work: Callable[[], T]) -> T:
    """Blocking work (migrations, containers) on a short-lived thread of its own, so
    nothing lingers in the loop's default executor after the server stops."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as error:
            loop.call_soon_threadsafe(_settle, done, None, error)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    thread = threading.Thread(target=run, name="identity-test-server-setup", daemon=True)
    thread.start()
    result = await done
    thread.join()  # it has handed over its result: only its exit is left
    return result


def _settle(done: asyncio.Future[T], result: T | None, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(cast(T, result))
