"""End-to-end load test of one ``identity serve`` process on a fresh Postgres database.

Creates ``identity_bench_<random>``, migrates it, inserts verified users, starts
one server with very high rate limits, then drives four measurements with an
asyncio + aiohttp client:

* ``GET /auth/me`` with a valid access token (JWT verify, session + account reads);
* ``POST /auth/refresh-token``: every worker owns one session and chains its
  rotated refresh tokens (a spent token is never presented again);
* ``POST /auth/login`` over several users (bcrypt bound);
* ``GET /health`` latency from one sequential prober while the login storm runs.

The hasher alone (``bench/hasher.py``, same rounds and threads) gives the
ceiling for logins per second. The server is always stopped and the database
always dropped, also on errors and Ctrl-C.

    PYTHONPATH=. .venv/bin/python bench/load.py --rounds 12
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import aiohttp
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from identity.adapters.bcrypt_hasher import (  # noqa: E402
    BcryptSha256Hasher,
    make_hasher_executor,
)

DEFAULT_SERVER_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
PASSWORD = "benchmark password 4711"
HUGE_LIMIT = "1000000/minute"
HEALTH_WAIT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
REQUEST_TIMEOUT_SECONDS = 60.0
HEALTH_PROBE_PAUSE = 0.01  # seconds between two /health probes

# Targets printed beside the numbers.
TARGET_ME_RPS = 2500.0
TARGET_REFRESH_RPS = 600.0
TARGET_LOGIN_SHARE = 0.90
TARGET_HEALTH_P99_MS = 20.0


T = TypeVar("T")
Worker = Callable[["Window", "Stats"], Coroutine[Any, Any, None]]


class BenchError(Exception):
    """Setup failed: one line saying what and where."""


# --- command line ------------------------------------------------------------


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load test of one identity server process on a fresh Postgres database."
    )
    cpus = os.cpu_count() or 1
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument(
        "--threads", type=int, default=cpus, help=f"hasher threads (default: CPUs = {cpus})"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="concurrent client workers (default 32)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="measured seconds per phase (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="unmeasured seconds before each phase (default 2)"
    )
    parser.add_argument(
        "--users", type=int, default=64, help="verified users created up front (default 64)"
    )
    parser.add_argument(
        "--hasher-seconds",
        type=float,
        default=None,
        help="measuring time of the hasher-alone baseline (default: --duration)",
    )
    parser.add_argument(
        "--database-server-url",
        default=DEFAULT_SERVER_URL,
        help="Postgres server where a database may be created and dropped "
        f"(default {DEFAULT_SERVER_URL})",
    )
    parser.add_argument(
        "--server-log", help="keep the server's output in this file (default: a temporary file)"
    )
    args = parser.parse_args(argv)
    for name in ("threads", "concurrency", "users"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if not 4 <= args.rounds <= 31:
        parser.error("--rounds must be from 4 to 31")
    if args.duration <= 0 or args.warmup < 0:
        parser.error("--duration must be positive and --warmup not negative")
    if args.hasher_seconds is None:
        args.hasher_seconds = args.duration
    return args


# --- measurements ------------------------------------------------------------


@dataclass
class Window:
    """The measured interval of a phase: the requests that finish inside it count.

    Counting completions (not starts) keeps slow requests measurable: at 32
    concurrent logins one login takes several seconds, longer than a short window.
    The warm-up runs at full load, so a request begun in it is already steady state.
    """

    warmup_ends: float
    ends: float

    def measures(self, started: float, finished: float) -> bool:
        return self.warmup_ends <= finished <= self.ends


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, 2xx only
    errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def record(self, window: Window, started: float, status: int | str) -> bool:
        finished = time.perf_counter()
        ok = isinstance(status, int) and 200 <= status < 300
        if window.measures(started, finished):
            if ok:
                self.latencies.append(finished - started)
            else:
                self.errors += 1
                self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        return ok


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class PhaseResult:
    name: str
    seconds: float
    stats: Stats
    server_cpu: float | None  # share of one core
    client_cpu: float

    @property
    def rate(self) -> float:
        return len(self.stats.latencies) / self.seconds

    @property
    def p50_ms(self) -> float:
        return 1000 * percentile(self.stats.latencies, 0.50)

    @property
    def p99_ms(self) -> float:
        return 1000 * percentile(self.stats.latencies, 0.99)


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the database ------------------------------------------------------------


def _admin_url(server_url: str) -> URL:
    url = make_url(server_url)
    if url.drivername != "postgresql+asyncpg":
        raise BenchError("--database-server-url must be a postgresql+asyncpg:// URL")
    return url


async def create_database(server_url: str, name: str) -> None:
    engine = create_async_engine(_admin_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def drop_database(server_url: str, name: str) -> None:
    engine = create_async_engine(_admin_url(server_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        await engine.dispose()


async def vacuum(database_url: str) -> None:
    """VACUUM ANALYZE the database, as autovacuum would between phases.

    Some machines run Postgres with autovacuum off; without this, every refresh's
    dead session row stays, and later phases of a run measure the bloat.
    """
    engine = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text("VACUUM ANALYZE"))
    finally:
        await engine.dispose()


def user_email(index: int) -> str:
    return f"bench-{index}@example.com"


async def create_users(database_url: str, count: int, rounds: int, threads: int) -> None:
    """Verified users with one bcrypt_sha256 hash of ``PASSWORD`` (the cost is what matters)."""
    with make_hasher_executor(threads) as pool:
        password_hash = await BcryptSha256Hasher(rounds, pool).hash(PASSWORD)
    now = datetime.now(UTC)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            tenant_id = (
                await connection.execute(text("SELECT id FROM tenants WHERE slug = 'default'"))
            ).scalar_one_or_none()
            if tenant_id is None:
                raise BenchError("the migrated database has no 'default' tenant")
            rows = [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "email": user_email(i),
                    "normalized_email": user_email(i).casefold(),
                    "password_hash": password_hash,
                    "full_name": f"Bench User {i}",
                    "now": now,
                }
                for i in range(count)
            ]
            await connection.execute(
                text(
                    "INSERT INTO users (id, tenant_id, email, normalized_email, password_hash, "
                    "full_name, is_verified, is_active, verified_at, created_at, updated_at) "
                    "VALUES (:id, :tenant_id, :email, :normalized_email, :password_hash, "
                    ":full_name, true, true, :now, :now, :now)"
                ),
                rows,
            )
    finally:
        await engine.dispose()


# --- child processes ---------------------------------------------------------


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + path if path else "")
    env.update(extra)
    return env


async def run_command(args: list[str], env: dict[str, str], what: str, cwd: Path = REPO) -> str:
    process = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        cwd=str(cwd),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    decoded = output.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"{what} failed (exit {process.returncode}):\n{decoded.strip()}")
    return decoded


async def hasher_alone(rounds: int, threads: int, seconds: float) -> float:
    """Verifications per second of ``bench/hasher.py`` with the same rounds and threads."""
    output = await run_command(
        [
            sys.executable,
            str(REPO / "bench" / "hasher.py"),
            "--rounds",
            str(rounds),
            "--threads",
            str(threads),
            "--seconds",
            str(seconds),
        ],
        _child_env({}),
        "the hasher-alone baseline",
    )
    match = re.search(r"rate=([0-9.]+)/s", output)
    if match is None:
        raise BenchError(f"could not read the rate from bench/hasher.py: {output.strip()!r}")
    return float(match.group(1))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def open_log(path: str | None) -> TextIO:
    if not path:
        fd, path = tempfile.mkstemp(prefix="identity-bench-", suffix=".log")
        os.close(fd)
    return open(path, "w")


def tail(path: str, lines: int = 30) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Server:
    """One ``identity serve`` child process; ``stop`` is safe to call in any state."""

    def __init__(self, env: dict[str, str], port: int, log: TextIO, cwd: Path = REPO) -> None:
        self.env = env
        self.cwd = cwd  # ``python -m`` puts it first on sys.path
        self.port = port
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.base = f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity.entrypoints.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            env=self.env,
            cwd=str(self.cwd),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )

    async def wait_healthy(self, http: aiohttp.ClientSession) -> None:
        assert self.process is not None
        deadline = time.monotonic() + HEALTH_WAIT_SECONDS
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise BenchError(
                    f"the server exited with {self.process.returncode} before it was healthy:\n"
                    + tail(self.log.name)
                )
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(
                    f"{self.base}/health", timeout=aiohttp.ClientTimeout(total=2)
                ) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
        raise BenchError(
            f"the server was not healthy within {HEALTH_WAIT_SECONDS:.0f}s:\n" + tail(self.log.name)
        )

    def cpu_seconds(self) -> float | None:
        return None if self.process is None else _process_cpu_seconds(self.process.pid)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


# --- the client --------------------------------------------------------------


@dataclass
class Tokens:
    access: str
    refresh: str


class Client:
    """The four calls; each returns (status, payload), the payload only on success."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base

    async def login(self, email: str) -> tuple[int, Tokens | None]:
        async with self.http.post(
            f"{self.base}/auth/login", json={"email": email, "password": PASSWORD}
        ) as response:
            if response.status == 200:
                body = await response.json()
                return 200, Tokens(str(body["access_token"]), str(body["refresh_token"]))
            await response.read()
            return response.status, None

    async def tokens_for(self, email: str, deadline: float) -> Tokens:
        """Log in until it works or ``deadline`` passes."""
        last: object = None
        while time.perf_counter() < deadline:
            try:
                status, tokens = await self.login(email)
            except (aiohttp.ClientError, TimeoutError) as error:
                last = error
            else:
                if tokens is not None:
                    return tokens
                last = status
            await asyncio.sleep(0.1)
        raise BenchError(f"could not log in as {email}: {last}")

    async def me(self, access: str) -> tuple[int, bool]:
        async with self.http.get(
            f"{self.base}/auth/me", headers={"Authorization": f"Bearer {access}"}
        ) as response:
            await response.read()
            return response.status, True

    async def refresh(self, refresh: str) -> tuple[int, str | None]:
        async with self.http.post(
            f"{self.base}/auth/refresh-token", json={"refresh_token": refresh}
        ) as response:
            if response.status == 200:
                body = await response.json()
                return 200, str(body["refresh_token"])
            await response.read()
            return response.status, None

    async def health(self) -> tuple[int, bool]:
        async with self.http.get(f"{self.base}/health") as response:
            await response.read()
            return response.status, True


async def timed(stats: Stats, window: Window, call: Awaitable[tuple[int, T]]) -> T | None:
    """Await one request; record it; its payload when the answer was 2xx."""
    started = time.perf_counter()
    payload: T | None = None
    try:
        status: int | str
        status, payload = await call
    except (aiohttp.ClientError, TimeoutError) as error:
        status = type(error).__name__
    return payload if stats.record(window, started, status) else None


def me_worker(client: Client, tokens: Tokens) -> Worker:
    """``GET /auth/me`` with the session's access token, back to back."""

    async def work(window: Window, stats: Stats) -> None:
        while time.perf_counter() < window.ends:
            await timed(stats, window, client.me(tokens.access))

    return work


def refresh_worker(client: Client, email: str, tokens: Tokens) -> Worker:
    """Refresh the session's token chain, back to back; the last token is kept."""

    async def work(window: Window, stats: Stats) -> None:
        current = tokens.refresh
        while time.perf_counter() < window.ends:
            successor = await timed(stats, window, client.refresh(current))
            if successor is None:
                # The chain's state is unknown now: start a fresh session
                # rather than present a possibly spent token again.
                fresh = await client.tokens_for(email, window.ends + 60.0)
                successor = fresh.refresh
            current = successor
        tokens.refresh = current

    return work


def login_worker(client: Client, emails: list[str], index: int, stride: int) -> Worker:
    """Password logins, each worker walking the users with its own offset."""

    async def work(window: Window, stats: Stats) -> None:
        turn = 0
        while time.perf_counter() < window.ends:
            email = emails[(index + turn * stride) % len(emails)]
            turn += 1
            await timed(stats, window, client.login(email))

    return work


async def run_phase(
    name: str,
    server: Server,
    warmup: float,
    duration: float,
    workers: list[Worker],
    side: Callable[[Window], Coroutine[Any, Any, PhaseResult]] | None = None,
) -> tuple[PhaseResult, PhaseResult | None]:
    """Run ``workers`` through warm-up and measurement; each stops by itself at the end."""
    now = time.perf_counter()
    window = Window(warmup_ends=now + warmup, ends=now + warmup + duration)
    stats = Stats()
    side_task = asyncio.create_task(side(window)) if side else None
    tasks = [asyncio.create_task(worker(window, stats)) for worker in workers]
    await asyncio.sleep(max(0.0, window.warmup_ends - time.perf_counter()))
    cpu_server_0, cpu_client_0 = server.cpu_seconds(), time.process_time()
    wall_0 = time.perf_counter()
    await asyncio.sleep(max(0.0, window.ends - time.perf_counter()))
    cpu_server_1, cpu_client_1 = server.cpu_seconds(), time.process_time()
    wall_1 = time.perf_counter()
    await asyncio.gather(*tasks)
    side_result = await side_task if side_task else None
    elapsed = wall_1 - wall_0
    server_cpu = (
        (cpu_server_1 - cpu_server_0) / elapsed
        if cpu_server_0 is not None and cpu_server_1 is not None
        else None
    )
    result = PhaseResult(name, duration, stats, server_cpu, (cpu_client_1 - cpu_client_0) / elapsed)
    return result, side_result


# --- report ------------------------------------------------------------------


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def report(
    args: argparse.Namespace,
    me: PhaseResult,
    refresh: PhaseResult,
    login: PhaseResult,
    health: PhaseResult,
    hasher_rate: float,
) -> bool:
    share = login.rate / hasher_rate if hasher_rate > 0 else 0.0
    rows = [
        (me, f">= {TARGET_ME_RPS:,.0f} req/s", me.rate >= TARGET_ME_RPS),
        (refresh, f">= {TARGET_REFRESH_RPS:,.0f} req/s", refresh.rate >= TARGET_REFRESH_RPS),
        (
            login,
            f">= {TARGET_LOGIN_SHARE:.0%} of hasher ({share:.1%})",
            share >= TARGET_LOGIN_SHARE,
        ),
        (
            health,
            f"p99 < {TARGET_HEALTH_P99_MS:.0f} ms",
            bool(health.stats.latencies) and health.p99_ms < TARGET_HEALTH_P99_MS,
        ),
    ]
    print()
    print(
        f"identity load: rounds={args.rounds} threads={args.threads} "
        f"concurrency={args.concurrency} duration={args.duration:g}s warmup={args.warmup:g}s "
        f"users={args.users} cpus={os.cpu_count()}"
    )
    header = (
        f"{'phase':<30} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} "
        f"{'srv cpu':>8} {'cli cpu':>8}  {'target':<34} result"
    )
    print(header)
    print("-" * len(header))
    all_passed = True
    for result, target, passed in rows:
        all_passed &= passed
        server_cpu = f"{result.server_cpu:.0%}" if result.server_cpu is not None else "-"
        print(
            f"{result.name:<30} {result.rate:>9.1f} {result.p50_ms:>9.1f} {result.p99_ms:>9.1f} "
            f"{result.stats.errors:>7} {server_cpu:>8} {result.client_cpu:>8.0%}  "
            f"{target:<34} {_mark(passed)}"
        )
    print("-" * len(header))
    print(
        f"hasher alone (bench/hasher.py, rounds={args.rounds} threads={args.threads}): "
        f"{hasher_rate:.1f} verifications/s; logins/s = {share:.1%} of it"
    )
    for result, _, _ in rows:
        if result.stats.statuses:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(result.stats.statuses.items()))
            print(f"errors of {result.name}: {detail}")
    print(
        "req/s and latencies count the 2xx answers that finished inside the measured window; "
        "cpu columns are shares of one core (server: the one serve process)."
    )
    return all_passed


# --- main --------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{secrets.token_hex(6)}"
    database_url = (
        _admin_url(args.database_server_url)
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    port = free_port()
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),  # 48 characters
            "IDENTITY_PORT": str(port),
            "IDENTITY_LOG_LEVEL": "warning",
            "IDENTITY_BCRYPT_ROUNDS": str(args.rounds),
            "IDENTITY_HASHER_THREADS": str(args.threads),
            "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_OTP_REQUEST": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_OTP_VERIFY": HUGE_LIMIT,
        }
    )
    log = open_log(args.server_log)
    server = Server(env, port, log)
    created = False
    try:
        print(f"creating database {name} ...", flush=True)
        await create_database(args.database_server_url, name)
        created = True
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        print(f"creating {args.users} verified users (one bcrypt hash, cost {args.rounds}) ...")
        await create_users(database_url, args.users, args.rounds, args.threads)

        print(f"starting the server on 127.0.0.1:{port} (log: {log.name}) ...", flush=True)
        await server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await server.wait_healthy(http)
            client = Client(http, server.base)
            emails = [user_email(i) for i in range(args.users)]

            print(f"logging in {args.concurrency} workers ...", flush=True)
            setup_deadline = time.perf_counter() + 120.0
            sessions = await asyncio.gather(
                *(
                    client.tokens_for(emails[i % len(emails)], setup_deadline)
                    for i in range(args.concurrency)
                )
            )

            async def health_prober(window: Window) -> PhaseResult:
                stats = Stats()
                while time.perf_counter() < window.ends:
                    await timed(stats, window, client.health())
                    await asyncio.sleep(HEALTH_PROBE_PAUSE)
                return PhaseResult("GET /health (during logins)", args.duration, stats, None, 0.0)

            await vacuum(database_url)
            print(f"phase GET /auth/me ({args.warmup:g}s + {args.duration:g}s) ...", flush=True)
            me, _ = await run_phase(
                "GET /auth/me",
                server,
                args.warmup,
                args.duration,
                [me_worker(client, tokens) for tokens in sessions],
            )
            await vacuum(database_url)
            print(f"phase POST /auth/refresh-token ({args.warmup:g}s + {args.duration:g}s) ...")
            refresh, _ = await run_phase(
                "POST /auth/refresh-token",
                server,
                args.warmup,
                args.duration,
                [
                    refresh_worker(client, emails[i % len(emails)], tokens)
                    for i, tokens in enumerate(sessions)
                ],
            )
            # Measured right before the logins, with the server idle, so both see the
            # same machine.
            await vacuum(database_url)
            print(f"hasher alone for {args.hasher_seconds:g}s ...", flush=True)
            hasher_rate = await hasher_alone(args.rounds, args.threads, args.hasher_seconds)
            print(f"phase POST /auth/login ({args.warmup:g}s + {args.duration:g}s) ...", flush=True)
            login, health = await run_phase(
                "POST /auth/login",
                server,
                args.warmup,
                args.duration,
                [
                    login_worker(client, emails, i, args.concurrency)
                    for i in range(args.concurrency)
                ],
                side=health_prober,
            )
            assert health is not None
            health.server_cpu = login.server_cpu
            health.client_cpu = login.client_cpu
        return report(args, me, refresh, login, health, hasher_rate)
    finally:
        await server.stop()
        log.close()
        if created:
            try:
                await drop_database(args.database_server_url, name)
            except Exception as error:  # report, and keep the original error
                print(f"warning: could not drop database {name}: {error}", file=sys.stderr)
        if not args.server_log:
            with contextlib.suppress(OSError):
                os.unlink(log.name)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        passed = asyncio.run(bench(args))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
