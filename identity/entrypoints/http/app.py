"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from identity.adapters.sqlalchemy.unavailable import is_unavailable
from identity.domain.errors import StorageUnavailableError
from identity.entrypoints import pages
from identity.entrypoints.container import Container
from identity.entrypoints.discovery import discover_providers
from identity.entrypoints.http import declare, handlers, protocol_errors
from identity.entrypoints.http.keys import CONTAINER, METRICS, OPENAPI, SETTINGS
from identity.entrypoints.http.metrics import Metrics
from identity.entrypoints.http.middlewares import (
    MAX_BODY_BYTES,
    add_security_headers,
    edge,
)
from identity.entrypoints.http.openapi import openapi_json
from identity.entrypoints.http.protection import protect
from identity.entrypoints.settings import Settings

log = logging.getLogger("identity.server")

OUTBOX_POLL_SECONDS = 0.5
CODE_REQUESTS_POLL_SECONDS = 0.5
WEBHOOK_POLL_SECONDS = 0.5
BACKCHANNEL_POLL_SECONDS = 2.0
KEY_RELOAD_SECONDS = 15.0
PURGE_SECONDS = 600.0
BACKGROUND_STOP_SECONDS = 5.0


def build_container(settings: Settings) -> Container:
    container = Container()
    container.settings.override(settings)
    return container


def create_app(settings: Settings, container: Container | None = None) -> web.Application:
    """The application; ``container`` may carry test overrides."""
    container = container or build_container(settings)
    protocol_errors.install()
    # Every ``declare.Endpoints`` of the handler modules; a new module needs no line here.
    # Their ``Provide`` markers are read from ``app[CONTAINER]`` per request: no wiring,
    # so apps with different containers in one process stay apart.
    endpoints = declare.collect(handlers, Container)
    not_limited = frozenset(
        entry.path for group in endpoints for entry in group.declared if not entry.limited
    )
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            edge(
                settings.cors_origins,
                pages.page_errors(
                    protect(
                        settings,
                        container.rate_limiter(),
                        container.resolve_tenant(),
                        not_limited,
                    )
                ),
            )
        ],
        handler_args={"max_field_size": 16 * 1024},
    )
    app[SETTINGS] = settings
    app[CONTAINER] = container
    app[METRICS] = Metrics()
    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(http_client)
    app.cleanup_ctx.append(background_jobs)
    for group in endpoints:
        app.add_routes(group.routes)
    # Made now, so a document that cannot be built (two schemas of one name) stops the start.
    app[OPENAPI] = openapi_json(settings.issuer, tuple(endpoints))
    pages.setup(app, settings)
    return app


async def resources(app: web.Application) -> AsyncIterator[None]:
    """Load the signing keys at start; close pools and clients at the end."""
    container = app[CONTAINER]
    store = container.key_store()
    ring = await store.load_ring(container.clock().now())
    container.keyring.override(ring)
    # The dummy hash unknown-email logins check against is made now, so the very
    # first such login takes no longer than a known one.
    await container.hasher().warm_up()
    yield
    await container.background_imports().close()  # their runs are recorded as failed
    limiter_client = container.redis_client
    if app[SETTINGS].redis_url:
        await limiter_client().aclose()
    container.hasher_executor().shutdown(wait=False, cancel_futures=True)
    if container.storage() == "sql":
        await container.engine().dispose()


async def http_client(app: web.Application) -> AsyncIterator[None]:
    """The outbound HTTP session (identity providers), made inside the running loop and
    closed at the end. The configured OpenID Connect providers are discovered now: a
    discovery URL that can never work stops start-up (``SettingsError`` naming it); a
    provider that is down answers 503 for itself only, until it is back."""
    container = app[CONTAINER]
    session = aiohttp.ClientSession(
        headers={"User-Agent": "identity"}, timeout=aiohttp.ClientTimeout(total=10)
    )
    container.http_client.override(session)
    try:
        await discover_providers(app[SETTINGS], container.identity_providers())
    except BaseException:
        container.http_client.reset_override()
        await session.close()
        raise
    yield
    # Nothing may keep the closed session: the next start makes a new provider.
    container.sign_in_services.reset()
    container.identity_providers.reset()
    container.http_client.reset_override()
    await session.close()


async def _repeat(
    name: str,
    job: Callable[[], Awaitable[object]],
    every: float,
    *,
    stop: asyncio.Event | None = None,
    busy_again: bool = False,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ran: Callable[[str, bool], None] = lambda _job, _ok: None,
) -> None:
    """Run ``job`` until ``stop`` is set; a failure is logged and retried, never fatal.

    ``stop`` ends the loop between runs: the run in progress finishes, and a
    pause is cut short. Shutdown sets it rather than cancelling, because a
    transaction cancelled halfway leaves its connection to be torn down under
    the cancellation, which on aiosqlite can hang for good.

    An outage fails every run: the failure is logged once, when it starts (one
    line when the database is unavailable, the traceback otherwise), and its
    end once; meanwhile the pause doubles up to ``MAX_BACKOFF_SECONDS``.
    ``ran(name, ok)`` is told of every run (the metrics count them).
    """
    stop = stop or asyncio.Event()
    this = asyncio.current_task()
    failures = 0
    while not stop.is_set():
        try:
            result = await job()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            failures += 1
            if failures == 1:
                _log_job_failure(name, error)
            result = 0
            ran(name, False)
        else:
            ran(name, True)
            if failures:
                log.info("background job recovered", extra={"job": name, "failures": failures})
            failures = 0
        if this is not None and this.cancelling():
            # A library turned our cancellation into its own error: stop anyway.
            raise asyncio.CancelledError
        if (busy_again and result) or stop.is_set():
            continue  # more may be waiting, or the loop ends here
        await _pause(sleep, backoff(every, failures), stop)


async def _pause(
    sleep: Callable[[float], Awaitable[object]], seconds: float, stop: asyncio.Event
) -> None:
    """``sleep(seconds)``, cut short when ``stop`` is set."""
    pending = {asyncio.ensure_future(sleep(seconds)), asyncio.ensure_future(stop.wait())}
    try:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in pending:
            waiter.cancel()


MAX_BACKOFF_SECONDS = 30.0


def backoff(every: float, failures: int) -> float:
    """The pause after ``failures`` failed runs in a row: doubling, bounded."""
    if failures == 0:
        return every
    return min(every * 2.0 ** min(failures - 1, 20), max(every, MAX_BACKOFF_SECONDS))


def _log_job_failure(name: str, error: Exception) -> None:
    if isinstance(error, StorageUnavailableError) or is_unavailable(error):
        log.warning(
            "background job paused: database unavailable (%s); retrying with backoff",
            type(error).__name__,
            extra={"job": name},
        )
    else:
        log.exception("background job failed; retrying with backoff", extra={"job": name})


async def background_jobs(app: web.Application) -> AsyncIterator[None]:
    """The periodic jobs: code requests, the mail outbox, webhook deliveries, the key
    reloader and the purge of expired rows."""
    container = app[CONTAINER]
    codec = container.token_codec()
    store = container.key_store()

    async def reload_keys() -> None:
        codec.replace_keyring(await store.load_ring(container.clock().now()))

    codes_signal = container.code_requests_signal()
    metrics = app[METRICS]
    stop = asyncio.Event()

    def start(
        name: str,
        job: Callable[[], Awaitable[object]],
        every: float,
        *,
        busy_again: bool = False,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> asyncio.Task[None]:
        loop = _repeat(
            name, job, every, stop=stop, busy_again=busy_again, sleep=sleep, ran=metrics.job_ran
        )
        return asyncio.create_task(loop, name=name)

    tasks = [
        # Woken by each register/request-otp of this process; polls for the others'.
        start(
            "codes",
            container.issue_requested_codes(),
            CODE_REQUESTS_POLL_SECONDS,
            busy_again=True,
            sleep=codes_signal.wait,
        ),
        start("outbox", container.deliver_mail(), OUTBOX_POLL_SECONDS, busy_again=True),
        start("webhooks", container.deliver_webhooks(), WEBHOOK_POLL_SECONDS, busy_again=True),
        start(
            "backchannel_logout",
            container.deliver_backchannel_logouts(),
            BACKCHANNEL_POLL_SECONDS,
            busy_again=True,
        ),
        start("keys", reload_keys, KEY_RELOAD_SECONDS),
        start("purge", container.purge_expired(), PURGE_SECONDS),
    ]
    yield
    # Each job ends after the run it is in; only one that overruns is cancelled.
    stop.set()
    _, stuck = await asyncio.wait(tasks, timeout=BACKGROUND_STOP_SECONDS)
    for task in stuck:
        log.warning(
            "background job overran the stop; cancelling it", extra={"job": task.get_name()}
        )
        task.cancel()
    if stuck:
        _, stuck = await asyncio.wait(stuck, timeout=BACKGROUND_STOP_SECONDS)
    await container.webhook_sender().close()
    for task in stuck:
        log.error("background job did not stop", extra={"job": task.get_name()})
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("background job ended with an error", exc_info=task.exception())
