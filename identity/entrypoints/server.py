"""Running the HTTP server: one process, or several sharing one port.

With ``workers > 1`` this process becomes a small master: it prepares the
state every worker shares (migrations of the embedded SQLite default, the
first signing key), then starts the workers with the "spawn" start method.
Each worker builds its own application, connection pool and Redis client and
binds the same port with ``SO_REUSEPORT``, so the kernel spreads connections
between them. The master forwards SIGTERM/SIGINT, restarts nothing, and exits
0 only when every worker stopped cleanly after being asked to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import AsyncIterator
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import aiohttp
from aiohttp import web
from sqlalchemy.engine import make_url

from identity.adapters.clock import SystemClock
from identity.adapters.sqlalchemy import migrate
from identity.entrypoints.container import identity_providers
from identity.entrypoints.discovery import discover_providers
from identity.entrypoints.http.app import build_container, create_app
from identity.entrypoints.logs import configure_logging
from identity.entrypoints.settings import Settings

log = logging.getLogger("identity.server")

SHUTDOWN_GRACE_SECONDS = 10.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, workers: int = 1
) -> int:
    """Serve until SIGTERM/SIGINT; the process exit status."""
    settings = settings.served_at(host or settings.host, settings.port if port is None else port)
    host, port = settings.host, settings.port
    problem = _workers_problem(settings, port, workers)
    if problem:
        log.error(problem)
        return 2
    if settings.is_embedded_database:
        # The embedded default must just work: bring its schema up to date first,
        # once, before any worker opens the database.
        migrate.upgrade(settings.database_url)
    log.info("serving", extra={"host": host, "port": port, "workers": workers})
    if workers == 1:
        _run_app(settings, host, port, worker=False)
        return 0
    if settings.is_embedded_database:
        log.warning(
            "SQLite with several workers serialises writes: each write transaction "
            "waits for the database lock held by the others; use Postgres to scale"
        )
    # The first start creates the signing key. Done here, once: two workers
    # starting together would each create one and sign with different keys
    # until their next reload.
    asyncio.run(_ensure_signing_key(settings))
    # A discovery URL that can never work stops the master, before any worker.
    asyncio.run(_check_providers(settings))
    return _supervise(settings, host, port, workers)


def _workers_problem(settings: Settings, port: int, workers: int) -> str | None:
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1:
        return None
    if not hasattr(socket, "SO_REUSEPORT"):
        return "--workers needs SO_REUSEPORT, which this platform lacks; run one process"
    if port == 0:
        return "--workers needs a fixed port: with port 0 every worker would get its own"
    if settings.is_embedded_database and make_url(settings.database_url).database in (
        None,
        "",
        ":memory:",
    ):
        return "--workers needs a database file or Postgres: in-memory SQLite is per process"
    return None


async def _ensure_signing_key(settings: Settings) -> None:
    container = build_container(settings)
    try:
        await container.key_store().load_ring(container.clock().now())
    finally:
        await container.engine().dispose()


async def _check_providers(settings: Settings) -> None:
    async with aiohttp.ClientSession() as http:
        await discover_providers(settings, identity_providers(settings, http, SystemClock()))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (Linux, macOS): the same asyncio API, a faster
    network core. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _run_app(settings: Settings, host: str, port: int, *, worker: bool) -> None:
    app = create_app(settings)
    if worker:
        app.cleanup_ctx.append(_worker_lifecycle)
    # SIGTERM/SIGINT: stop accepting, finish in-flight requests, run cleanups, exit 0.
    web.run_app(
        app,
        loop=new_event_loop(),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        handle_signals=True,
        reuse_port=True if worker else None,
    )


async def _worker_lifecycle(_app: web.Application) -> AsyncIterator[None]:
    """Log "worker ready"; stop gracefully if the master dies without stopping us.

    Runs at application start-up, after aiohttp installed its signal handlers:
    from the "worker ready" line on, a SIGTERM is a graceful stop. The master
    stops its workers itself; this covers a master killed by SIGKILL or OOM.
    """
    log.info("worker ready", extra={"pid": os.getpid()})
    master = multiprocessing.parent_process()
    if master is None:
        yield
        return
    loop = asyncio.get_running_loop()
    # The master's sentinel turns readable (end of file) when the master is gone.
    sentinel = master.sentinel

    def master_gone() -> None:
        loop.remove_reader(sentinel)
        log.warning("master process is gone; stopping", extra={"pid": os.getpid()})
        os.kill(os.getpid(), signal.SIGTERM)

    loop.add_reader(sentinel, master_gone)
    yield
    loop.remove_reader(sentinel)


def _worker_main(settings: Settings, host: str, port: int) -> None:
    """A worker process (spawned: nothing is inherited but the arguments)."""
    # Out of the terminal's process group: a Ctrl-C reaches the master only,
    # which forwards it once, instead of every worker receiving it twice.
    os.setsid()
    configure_logging(settings.log_format, settings.log_level)
    log.info("worker started", extra={"pid": os.getpid()})
    _run_app(settings, host, port, worker=True)
    log.info("worker stopped", extra={"pid": os.getpid()})


class _Supervisor:
    """Starts the workers, forwards the stop signal, and judges how they ended."""

    def __init__(self, settings: Settings, host: str, port: int, workers: int) -> None:
        self._settings = settings
        self._host = host
        self._port = port
        self._workers = workers
        self._context = multiprocessing.get_context("spawn")
        self._children: list[BaseProcess] = []
        self._signalled: set[int] = set()
        self.stopping = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            log.info("already stopping; waiting for the workers")
            return
        log.info("stopping workers", extra={"signal": signal.Signals(signum).name})
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        for child in self._children:
            self._forward(child)

    def _forward(self, child: BaseProcess) -> None:
        # SIGTERM whichever signal the master got: a worker still starting up
        # (before aiohttp's handlers) just ends, where SIGINT would print a
        # KeyboardInterrupt traceback from the middle of an import.
        pid = child.pid
        if not self.stopping or pid is None or pid in self._signalled:
            return
        if child.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self._signalled.add(pid)

    def run(self) -> int:
        for index in range(self._workers):
            if self.stopping:
                break
            process = self._context.Process(
                target=_worker_main,
                args=(self._settings, self._host, self._port),
                name=f"identity-worker-{index + 1}",
            )
            self._children.append(process)
            process.start()
            self._forward(process)  # a signal may have come in during start()
        failed = False
        running = list(self._children)
        while running:
            wait([child.sentinel for child in running])
            for child in [child for child in running if child.exitcode is not None]:
                running.remove(child)
                failed |= not self._ended_well(child)
        for child in self._children:
            child.join()
        return 1 if failed else 0

    def _ended_well(self, child: BaseProcess) -> bool:
        code = child.exitcode
        # A worker killed by the forwarded SIGTERM before it installed its own
        # handlers also stopped as asked.
        if self.stopping and code in (0, -signal.SIGTERM):
            log.info("worker exited", extra={"pid": child.pid, "exitcode": code})
            return True
        if self.stopping:
            log.error("worker failed while stopping", extra={"pid": child.pid, "exitcode": code})
            return False
        log.error(
            "worker exited unexpectedly; stopping the others",
            extra={"pid": child.pid, "exitcode": code},
        )
        # Restart none: a deployment with fewer workers than asked for should fail
        # visibly, so whatever runs the master can restart it whole.
        self.stop()
        return False


def _supervise(settings: Settings, host: str, port: int, workers: int) -> int:
    supervisor = _Supervisor(settings, host, port, workers)
    previous = {signum: signal.signal(signum, supervisor.on_signal) for signum in STOP_SIGNALS}
    try:
        return supervisor.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
