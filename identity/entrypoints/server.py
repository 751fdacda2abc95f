"""Running the HTTP server: one process, or several sharing one port."""

from __future__ import annotations

import logging

from aiohttp import web

from identity.adapters.sqlalchemy import migrate
from identity.entrypoints.http.app import create_app
from identity.entrypoints.settings import Settings

log = logging.getLogger("identity.server")

SHUTDOWN_GRACE_SECONDS = 10.0


def serve(
    settings: Settings, *, host: str | None = None, port: int | None = None, workers: int = 1
) -> int:
    if settings.is_embedded_database:
        # The embedded default must just work: bring its schema up to date first.
        migrate.upgrade(settings.database_url)
    host = host or settings.host
    port = port or settings.port
    log.info("serving", extra={"host": host, "port": port, "workers": workers})
    # SIGTERM/SIGINT: stop accepting, finish in-flight requests, run cleanups, exit 0.
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        access_log=None,
        print=None,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        handle_signals=True,
    )
    return 0
