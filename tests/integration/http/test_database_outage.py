"""A database going away is a 503 with ``Retry-After``, never a 500.

Each "unavailable" class is produced for real on a private Postgres cluster
started for this module (never the shared server): stopped, shutting down,
starting up, out of connection slots, a connection lost mid-transaction, and
a restart under traffic. The app connects as an ordinary role, so the slots
reserved for superusers stay free for the test's own control connection.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from identity.adapters.sealing import Sealers
from identity.adapters.sqlalchemy.engine import make_engine
from identity.adapters.sqlalchemy.migrate import upgrade
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork
from identity.domain.errors import StorageUnavailableError
from tests.integration.http.conftest import Api, MakeApi, problem_of

CLUSTER_SECRET = "outage-cluster-secret-" + "k" * 20
# One pytest-xdist worker runs them all: the module's cluster is made once per worker.
pytestmark = pytest.mark.xdist_group("database_outage")
APP_SLOTS = 12  # connections the app role may hold: max_connections minus the reserved ones


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A throwaway Postgres cluster on a free port, run as the ``postgres`` OS user."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="identity-outage-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:  # postgres refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "shared_buffers": "16MB",
            "max_connections": str(APP_SLOTS + 3),
            "superuser_reserved_connections": "3",
            "hot_standby": "off",  # with standby.signal: stays "starting up"
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def start(self, *, wait: bool = True) -> None:
        if self.running():
            return
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w" if wait else "-W",
                  "start")  # fmt: skip

    def stop(self, mode: str = "fast", *, wait: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w" if wait else "-W", "stop",
                  check=False)  # fmt: skip

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w",
                  "restart")  # fmt: skip

    def standby_signal(self, present: bool) -> None:
        signal_file = self.data / "standby.signal"
        if present:
            signal_file.touch()
            if os.geteuid() == 0:
                shutil.chown(signal_file, "postgres", "postgres")
        else:
            signal_file.unlink(missing_ok=True)

    def processes(self) -> list[int]:
        """The postmaster and its children (backends and helpers)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(
            ["pgrep", "-P", str(postmaster)], capture_output=True, text=True, check=False
        ).stdout.split()
        return [postmaster, *map(int, children)]

    def freeze(self, frozen: bool) -> None:
        """Stop (SIGSTOP) or resume every process: a server that stops answering
        without closing a single connection."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, user: str = "postgres", database: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    @property
    def app_url(self) -> str:
        return f"postgresql+asyncpg://app@127.0.0.1:{self.port}/identity"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("no Postgres server binaries in /usr/lib/postgresql/*/bin to run a cluster")
    cluster = Cluster(bin_dir)
    try:
        cluster.init()
        cluster.start()

        async def prepare() -> None:
            admin = await asyncpg.connect(cluster.dsn())
            try:
                await admin.execute("CREATE ROLE app LOGIN")
                await admin.execute("CREATE DATABASE identity OWNER app")
            finally:
                await admin.close()

        asyncio.run(prepare())
        upgrade(cluster.app_url)
        yield cluster
    finally:
        cluster.remove()


@pytest.fixture
async def outage_api(cluster: Cluster, make_api: MakeApi) -> Api:
    cluster.standby_signal(False)
    await asyncio.to_thread(cluster.start)
    # One secret for the module: the cluster's database keeps its signing key between tests.
    return await make_api(
        database_url=cluster.app_url, DB_POOL_TIMEOUT="2s", SECRET_KEY=CLUSTER_SECRET
    )


async def assert_503(response: Any) -> None:
    await problem_of(response, 503, "service_unavailable")
    assert int(response.headers["Retry-After"]) >= 1


def traffic(api: Api, tokens: dict[str, Any]) -> list[Callable[[], Awaitable[Any]]]:
    """One request of each kind a client sends, each needing the database."""
    return [
        lambda: api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]}),
        lambda: api.post("/auth/login", {"email": "nobody@example.com", "password": "x" * 10}),
        lambda: api.post("/auth/request-otp", {"email": "someone@example.com", "purpose": "login"}),
        lambda: api.get("/auth/me", token=tokens["access_token"]),
    ]


async def until_ok(api: Api, seconds: float = 10.0) -> None:
    """Poll /health until the app sees the database again (bounded)."""
    deadline = time.monotonic() + seconds
    while (await api.get("/health")).status != 200:
        assert time.monotonic() < deadline, "the app did not see the database come back"
        await asyncio.sleep(0.1)


async def connect_error(cluster: Cluster) -> BaseException | None:
    try:
        connection = await asyncpg.connect(cluster.dsn("app", "identity"), timeout=2)
    except Exception as error:
        return error
    await connection.close()
    return None


async def test_a_stopped_database_is_a_503_and_service_resumes_after_start(
    cluster: Cluster, outage_api: Api
) -> None:
    api = outage_api
    tokens = await api.register_verified("ada@example.com")

    await asyncio.to_thread(cluster.stop, "fast")
    for request in traffic(api, tokens):
        await assert_503(await request())
    await asyncio.to_thread(cluster.start)
    await until_ok(api)

    response = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    assert response.status == 200, await response.text()


async def test_health_answers_503_in_time_when_the_database_stops_answering(
    cluster: Cluster, outage_api: Api
) -> None:
    """A hung server refuses nothing: the probe's query just never returns, and
    giving its connection up takes seconds more. /health must still answer
    within 2 s (a load balancer's check times out), and turn 503."""
    api = outage_api
    assert (await api.get("/health")).status == 200  # the probe's connection is pooled
    cluster.freeze(True)
    try:
        seen, deadline = [], time.monotonic() + 10
        while not seen or seen[-1] != 503:
            assert time.monotonic() < deadline, f"/health never turned 503: {seen}"
            started = time.monotonic()
            response = await api.get("/health")
            assert time.monotonic() - started < 2.0, "a /health answer took 2 s or more"
            seen.append(response.status)
        assert (await response.json())["checks"]["database"] == "unavailable"
    finally:
        cluster.freeze(False)
    await until_ok(api)


async def test_requests_answer_503_after_the_statement_timeout_when_the_database_stops_answering(
    cluster: Cluster, make_api: MakeApi
) -> None:
    cluster.standby_signal(False)
    await asyncio.to_thread(cluster.start)
    api = await make_api(
        database_url=cluster.app_url,
        DB_POOL_TIMEOUT="2s",
        DB_STATEMENT_TIMEOUT="2s",
        SECRET_KEY=CLUSTER_SECRET,
    )
    tokens = await api.register_verified("fay@example.com")
    cluster.freeze(True)
    try:

        async def timed(request: Callable[[], Awaitable[Any]]) -> float:
            started = time.monotonic()
            await assert_503(await request())
            return time.monotonic() - started

        durations = await asyncio.gather(*(timed(request) for request in traffic(api, tokens)))
    finally:
        cluster.freeze(False)
    # The statement timeout, then giving the hung connection up (SQLAlchemy
    # waits up to 2 s for that), not asyncpg's default of 30 s.
    assert max(durations) < 6.0, durations
    await until_ok(api)


async def test_a_database_shutting_down_is_a_503(cluster: Cluster, outage_api: Api) -> None:
    api = outage_api
    tokens = await api.register_verified("cy@example.com")
    # A session that stays open keeps a "smart" shutdown in its shutting-down state.
    holder = await asyncpg.connect(cluster.dsn())
    try:
        await asyncio.to_thread(cluster.stop, "smart", wait=False)
        deadline = time.monotonic() + 10
        while not isinstance(await connect_error(cluster), asyncpg.CannotConnectNowError):
            assert time.monotonic() < deadline, "the cluster never refused as shutting down"
            await asyncio.sleep(0.05)
        await api.container.engine().dispose()  # the next request needs a new connection

        for request in traffic(api, tokens):
            await assert_503(await request())
    finally:
        await holder.close()
        await asyncio.to_thread(cluster.stop, "fast")


async def test_a_database_starting_up_is_a_503(cluster: Cluster, outage_api: Api) -> None:
    api = outage_api
    tokens = await api.register_verified("di@example.com")
    await asyncio.to_thread(cluster.stop, "fast")
    cluster.standby_signal(True)  # a standby without hot standby never accepts connections
    await asyncio.to_thread(cluster.start, wait=False)
    try:
        deadline = time.monotonic() + 10
        while not isinstance(await connect_error(cluster), asyncpg.CannotConnectNowError):
            assert time.monotonic() < deadline, "the cluster never refused as starting up"
            await asyncio.sleep(0.05)

        for request in traffic(api, tokens):
            await assert_503(await request())
    finally:
        await asyncio.to_thread(cluster.stop, "fast")
        cluster.standby_signal(False)


async def test_too_many_connections_is_a_503(cluster: Cluster, outage_api: Api) -> None:
    api = outage_api
    tokens = await api.register_verified("ed@example.com")
    admin = await asyncpg.connect(cluster.dsn())
    hogs: list[asyncpg.Connection] = []
    try:
        # The server's own slots run out: what a new connection is told.
        for _ in range(APP_SLOTS + 1):
            try:
                hogs.append(await asyncpg.connect(cluster.dsn("app", "identity")))
            except asyncpg.TooManyConnectionsError:
                break
        else:
            pytest.fail("the cluster never ran out of connection slots")
        # The app's background jobs race for freed slots; a role limit of zero
        # answers every new connection of the app with the same error (53300).
        await admin.execute("ALTER ROLE app CONNECTION LIMIT 0")
        for hog in hogs:
            await hog.close()
        assert isinstance(await connect_error(cluster), asyncpg.TooManyConnectionsError)
        await api.container.engine().dispose()

        for request in traffic(api, tokens):
            await assert_503(await request())
    finally:
        await admin.execute("ALTER ROLE app CONNECTION LIMIT -1")
        await admin.close()
        for hog in hogs:
            await hog.close()
    await until_ok(api)


async def test_a_connection_lost_mid_transaction_is_storage_unavailable(
    cluster: Cluster, outage_api: Api
) -> None:
    engine = make_engine(cluster.app_url, pool_size=2)
    admin = await asyncpg.connect(cluster.dsn())
    try:
        with pytest.raises(StorageUnavailableError):
            async with SqlUnitOfWork(engine, Sealers.derive("s" * 40)) as uow:
                assert await uow.tenants.get_by_slug("default") is not None  # BEGIN; a read
                connection = uow.tenants._c  # type: ignore[attr-defined]
                pid = await connection.scalar(text("SELECT pg_backend_pid()"))
                # "terminating connection due to administrator command"
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                await uow.tenants.get_by_slug("default")
        async with SqlUnitOfWork(engine, Sealers.derive("s" * 40)) as uow:  # a new connection
            assert await uow.tenants.get_by_slug("default") is not None
    finally:
        await admin.close()
        await engine.dispose()


async def test_a_restart_under_traffic_never_answers_500(cluster: Cluster, outage_api: Api) -> None:
    api = outage_api
    tokens = await api.register_verified("bea@example.com")
    requests = traffic(api, tokens)[1:]  # refresh would rotate the token away
    statuses: list[int] = []
    restarted = asyncio.Event()

    async def clients() -> None:
        while not restarted.is_set():
            for request in requests:
                response = await request()
                statuses.append(response.status)
                if response.status == 503:
                    assert "Retry-After" in response.headers

    running = asyncio.create_task(clients())
    await asyncio.to_thread(cluster.restart)
    await until_ok(api)
    restarted.set()
    await running

    assert statuses, "no request was sent"
    assert 500 not in statuses, statuses
    response = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    assert response.status == 200, await response.text()
