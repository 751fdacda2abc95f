"""One deployment on several processes: real ``identity serve`` processes sharing one
Postgres database and one Redis, and ``serve --workers`` with its master process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from sqlalchemy.engine import make_url

from identity.adapters.clock import SystemClock
from identity.adapters.sealing import Sealers
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.application.mail_delivery import PurgeExpired
from identity.domain.mail import EmailMessage
from tests.integration.test_redis_outage import REDIS_SERVER, PrivateRedis, free_port

REPOSITORY = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
POLL_SECONDS = 0.05

UowFactory = Callable[[], SqlUnitOfWork]


async def poll_until(
    condition: Callable[[], bool], failure: Callable[[], str], *, seconds: float
) -> None:
    """Check ``condition`` until it holds; fail with ``failure()`` after ``seconds``.

    For states that announce themselves only by being visible (a log line, a
    process gone that is not our child): a bounded poll, not a guessed sleep.
    """
    try:
        async with asyncio.timeout(seconds):
            while True:
                if condition():
                    return
                await asyncio.sleep(POLL_SECONDS)
    except TimeoutError:
        pytest.fail(failure())


class Server:
    """``python -m identity.entrypoints.cli serve --port PORT ...`` with its log in a file."""

    def __init__(self, tmp_path: Path, name: str, port: int, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = tmp_path / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPOSITORY), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.env.update(env)
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, *args: str) -> Server:
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "identity.entrypoints.cli",
                "serve", "--port", str(self.port), *args,
                cwd=self.tmp_path,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_entries(self) -> list[dict[str, Any]]:
        """The JSON log lines (a traceback or Alembic's output is skipped)."""
        entries = []
        for line in self.log().splitlines():
            with suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    entries.append(entry)
        return entries

    def log_messages(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in self.log_entries() if entry.get("message") == message]

    async def wait_until_healthy(self, session: aiohttp.ClientSession) -> None:
        """Until /health answers 200; fail early if the process exits."""

        async def healthy() -> bool:
            with suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/health") as response:
                    return response.status == 200
            return False

        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not await healthy():
            if self.exited:
                pytest.fail(f"server exited:\n{self.log()}")
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"server not healthy within {START_TIMEOUT} s:\n{self.log()}")
            await asyncio.sleep(POLL_SECONDS)

    async def ready_workers(self, count: int) -> list[int]:
        """The pids of ``count`` workers that are serving (signal handlers installed)."""

        def ready() -> bool:
            if self.exited:
                pytest.fail(f"master exited:\n{self.log()}")
            return len(self.log_messages("worker ready")) >= count

        await poll_until(
            ready, lambda: f"{count} workers not ready:\n{self.log()}", seconds=START_TIMEOUT
        )
        return [entry["pid"] for entry in self.log_messages("worker ready")]

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await self.wait()

    async def wait(self) -> int:
        assert self.process is not None
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                return await self.process.wait()
        except TimeoutError:
            pytest.fail(f"server did not exit within {STOP_TIMEOUT} s:\n{self.log()}")

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def base_env(database_url: str, **overrides: str) -> dict[str, str]:
    values = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "x" * 40,
        "BCRYPT_ROUNDS": "4",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_GLOBAL": "10000/minute",
        **overrides,
    }
    return {f"IDENTITY_{name}": value for name, value in values.items()}


async def signing_key_count(database_url: str) -> int:
    url = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM signing_keys")
        return count
    finally:
        await connection.close()


@pytest.fixture
async def two_processes(migrated_postgres_url: str) -> AsyncIterator[list[UowFactory]]:
    """Units of work of two "processes": each its own engine and pool on one database."""
    engines = [make_engine(migrated_postgres_url, pool_size=2) for _ in range(2)]
    sealer = Sealers.derive("x" * 40)
    yield [lambda engine=engine: SqlUnitOfWork(engine, sealer) for engine in engines]
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        yield client


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    """Servers the test started; killed at the end if still running."""
    started: list[Server] = []
    yield started
    for server in started:
        await server.kill()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH; this test starts its own server")
    server = PrivateRedis(free_port(), tmp_path)
    await server.start()
    yield server
    await server.stop()


async def test_two_processes_share_one_login_limit_through_redis(
    tmp_path: Path,
    migrated_postgres_url: str,
    private_redis: PrivateRedis,
    session: aiohttp.ClientSession,
    servers: list[Server],
) -> None:
    env = base_env(migrated_postgres_url, REDIS_URL=private_redis.url, RATE_LIMIT_LOGIN="4/minute")
    for name in ("one", "two"):
        servers.append(await Server(tmp_path, name, free_port(), env).start())
    await asyncio.gather(*(server.wait_until_healthy(session) for server in servers))

    statuses = []
    for attempt in range(10):
        server = servers[attempt % 2]
        body = {"email": "alice@example.com", "password": "not the password"}
        async with session.post(f"{server.url}/auth/login", json=body) as response:
            statuses.append(response.status)
    # One limit across both processes: 4 answers in all, not 4 from each.
    assert statuses == [401] * 4 + [429] * 6

    for server in servers:
        assert await server.stop() == 0, server.log()


async def test_serve_with_two_workers_answers_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
    migrated_postgres_url: str,
    session: aiohttp.ClientSession,
    servers: list[Server],
) -> None:
    assert await signing_key_count(migrated_postgres_url) == 0
    server = Server(tmp_path, "master", free_port(), base_env(migrated_postgres_url))
    servers.append(await server.start("--workers", "2"))
    await server.wait_until_healthy(session)
    pids = await server.ready_workers(2)
    assert server.pid not in pids
    # The master made the first signing keys before the workers started, so
    # there is one per algorithm (EdDSA and RS256), not one per worker.
    assert await signing_key_count(migrated_postgres_url) == 2
    async with session.get(f"{server.url}/.well-known/jwks.json") as response:
        assert response.status == 200
        assert len((await response.json())["keys"]) == 2

    assert await server.stop(signal.SIGTERM) == 0, server.log()
    assert not any(is_running(pid) for pid in pids)
    assert len(server.log_messages("worker stopped")) == 2, server.log()


async def test_workers_stop_when_their_master_is_killed(
    tmp_path: Path,
    migrated_postgres_url: str,
    session: aiohttp.ClientSession,
    servers: list[Server],
) -> None:
    server = Server(tmp_path, "master", free_port(), base_env(migrated_postgres_url))
    servers.append(await server.start("--workers", "2"))
    await server.wait_until_healthy(session)
    pids = await server.ready_workers(2)

    await server.kill()  # SIGKILL: the master forwards nothing
    # The workers are not the test's children: watch their pids go.
    await poll_until(
        lambda: not any(is_running(pid) for pid in pids),
        lambda: f"the workers outlived their master:\n{server.log()}",
        seconds=STOP_TIMEOUT,
    )
    assert len(server.log_messages("master process is gone; stopping")) == 2, server.log()
    assert len(server.log_messages("worker stopped")) == 2, server.log()


async def test_workers_on_the_embedded_sqlite_default_migrate_once_and_warn(
    tmp_path: Path, session: aiohttp.ClientSession, servers: list[Server]
) -> None:
    env = {"IDENTITY_LOG_FORMAT": "json", "IDENTITY_BCRYPT_ROUNDS": "4"}
    server = Server(tmp_path, "master", free_port(), env)
    servers.append(await server.start("--workers", "2"))
    await server.wait_until_healthy(session)
    await server.ready_workers(2)
    assert (tmp_path / "identity.db").exists()

    assert await server.stop(signal.SIGINT) == 0, server.log()
    warnings = [
        entry
        for entry in server.log_entries()
        if entry["level"] == "warning" and "SQLite" in entry["message"]
    ]
    assert len(warnings) == 1, server.log()
    assert "serialises writes" in warnings[0]["message"]
    assert len(server.log_messages("worker stopped")) == 2, server.log()


async def test_workers_need_a_fixed_port(tmp_path: Path, servers: list[Server]) -> None:
    server = Server(tmp_path, "master", 0, {"IDENTITY_LOG_FORMAT": "json"})
    servers.append(await server.start("--workers", "2"))
    assert await server.wait() == 2
    assert "--workers needs a fixed port" in server.log()


async def test_one_process_purges_at_a_time_and_the_others_skip(
    two_processes: list[UowFactory],
) -> None:
    first, second = two_processes
    purge = PurgeExpired(second, SystemClock())
    async with first() as holder:
        assert await holder.try_lock(PurgeExpired.LOCK)
        assert await purge() is None  # skipped, not waiting for the holder
        async with first() as other:
            assert not await other.try_lock(PurgeExpired.LOCK)  # also within one pool
        assert await holder.try_lock("another job")
    # Released when the holder's transaction ended (here: left without commit).
    counts = await purge()
    assert counts is not None
    assert set(counts) >= {"otp_challenges", "invalidated_tokens", "sessions"}


async def test_on_sqlite_the_purge_holds_the_write_lock_and_runs(migrated_sqlite_url: str) -> None:
    # SQLite transactions begin IMMEDIATE: holding the lock is holding the
    # database, so a second process waits its turn and then finds nothing to do.
    engine = make_engine(migrated_sqlite_url, pool_size=1)
    try:
        purge = PurgeExpired(lambda: SqlUnitOfWork(engine, Sealers.derive("x" * 40)), SystemClock())
        counts = await purge()
        assert counts is not None
        assert set(counts) >= {"otp_challenges", "invalidated_tokens", "sessions"}
    finally:
        await engine.dispose()


async def test_outbox_messages_are_leased_to_one_process(
    two_processes: list[UowFactory],
) -> None:
    first, second = two_processes
    now = SystemClock().now()
    async with first() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        for n in range(6):
            message = EmailMessage(f"user{n}@example.com", "subject", "text", "<p>html</p>", "me")
            await uow.outbox.add(tenant.id, message, now)
        await uow.commit()

    lease = timedelta(minutes=2)
    async with first() as one, second() as two:
        # Both claim while the other's transaction is still open: SKIP LOCKED
        # hands each different rows instead of making one wait or double-send.
        async with asyncio.timeout(5):  # a claim that waited on the other would hang
            mine = await one.outbox.claim_due(now, 4, lease)
            theirs = await two.outbox.claim_due(now, 4, lease)
        await one.commit()
        await two.commit()
    assert len(mine) == 4
    assert len(theirs) == 2
    assert not {item.id for item in mine} & {item.id for item in theirs}
    async with second() as uow:
        assert await uow.outbox.claim_due(now, 10, lease) == []  # all leased


async def test_without_an_issuer_the_served_port_is_the_issuer(
    tmp_path: Path,
    migrated_postgres_url: str,
    session: aiohttp.ClientSession,
    servers: list[Server],
) -> None:
    # IDENTITY_PORT says 8000; the command line serves elsewhere.
    server = Server(tmp_path, "one", free_port(), base_env(migrated_postgres_url, PORT="8000"))
    servers.append(await server.start())
    await server.wait_until_healthy(session)

    async with session.get(f"{server.url}/.well-known/openid-configuration") as response:
        document = await response.json()
    assert document["issuer"] == server.url
    assert document["jwks_uri"] == f"{server.url}/.well-known/jwks.json"
