"""The authorization server's benchmarks (section 17), against one real ``identity serve``
on a fresh Postgres database.

    PYTHONPATH=. .venv/bin/python bench/oauth.py [--duration 6] [--concurrency 32]

1. ``client_credentials`` tokens per second at ``/oauth2/token`` (Basic client
   authentication, an RFC 9068 access token each). Target: at least 1,000/s.
2. The ``refresh_token`` grant at ``/oauth2/token`` against ``/auth/refresh-token``,
   the same number of token chains each, in ``--slices`` short slices that alternate
   (A B B A ...) so a machine whose load drifts weighs on both alike. Target: the
   grant at least as fast (>= 100 % of the JSON API's rate, within 5 % of noise).
3. The authorization-code round trip's server CPU: a browser signs in once on the
   hosted pages (``/ui/sign-in``), then ``--codes`` sequential round trips, each
   ``GET /oauth2/authorize`` with that browser's cookie (302 to the client with a
   code) then the code's exchange at ``/oauth2/token``. The server's CPU time
   (``/proc``) over the loop, less what the idle server spends in the same wall time
   (its background pollers), per round trip. Target: under 10 ms.

Every line prints the server's CPU per operation, the measure that survives a
loaded machine; ``--profile DIR`` records each phase with py-spy (``pip install
py-spy``; collapsed stacks, one file per phase).

Exit status 0 when every target is met, 1 when one is missed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    HUGE_LIMIT,
    PASSWORD,
    REQUEST_TIMEOUT_SECONDS,
    BenchError,
    Client,
    PhaseResult,
    Server,
    Stats,
    Tokens,
    Window,
    _admin_url,
    _child_env,
    create_database,
    create_users,
    drop_database,
    free_port,
    open_log,
    refresh_worker,
    run_command,
    run_phase,
    timed,
    user_email,
)

TARGET_CLIENT_CREDENTIALS = 1000.0
TARGET_REFRESH_SHARE = 0.95
TARGET_ROUND_TRIP_CPU_MS = 10.0
REDIRECT_URI = "https://rp.example/cb"
VERIFIER = "bench-verifier-" + "x" * 40
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per phase")
    parser.add_argument("--slices", type=int, default=3, help="refresh slices per side")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--codes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4, help="bcrypt cost of the users")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--server-log", default=None)
    parser.add_argument(
        "--profile",
        default=None,
        metavar="DIR",
        help="record each phase of the server with py-spy into DIR (flame graphs)",
    )
    return parser.parse_args()


@contextlib.asynccontextmanager
async def profiled(directory: str | None, server: Server, name: str) -> AsyncIterator[None]:
    """With ``--profile``: py-spy samples the server while the block runs (collapsed
    stacks, ``<name>.txt``; feed them to flamegraph.pl or speedscope)."""
    if directory is None or server.process is None:
        yield
        return
    spy = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(server.process.pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--output",
        str(Path(directory) / f"{name}.txt"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        await spy.wait()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def cc_worker(http: aiohttp.ClientSession, base: str, authorization: str) -> Any:
    async def call() -> tuple[int, bool]:
        async with http.post(
            f"{base}/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": authorization},
        ) as response:
            await response.read()
            return response.status, True

    async def work(window: Window, stats: Stats) -> None:
        while time.perf_counter() < window.ends:
            await timed(stats, window, call())

    return work


def oauth_refresh_worker(
    http: aiohttp.ClientSession, base: str, authorization: str, chain: list[str]
) -> Any:
    async def call(token: str) -> tuple[int, str | None]:
        async with http.post(
            f"{base}/oauth2/token",
            data={"grant_type": "refresh_token", "refresh_token": token},
            headers={"Authorization": authorization},
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body.get("refresh_token")

    async def work(window: Window, stats: Stats) -> None:
        while time.perf_counter() < window.ends:
            successor = await timed(stats, window, call(chain[0]))
            if successor is None:
                raise BenchError("an OAuth refresh failed; see the server log")
            chain[0] = successor

    return work


async def exchange(
    http: aiohttp.ClientSession, base: str, authorization: str, code: str
) -> dict[str, Any]:
    async with http.post(
        f"{base}/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        },
        headers={"Authorization": authorization},
    ) as response:
        body: dict[str, Any] = await response.json(content_type=None)
        if response.status != 200:
            raise BenchError(f"code exchange failed: {body}")
        return body


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A browser signed in on the hosted pages: its own cookie jar, no redirects followed."""

    def __init__(self, base: str, timeout: aiohttp.ClientTimeout) -> None:
        self.base = base
        # unsafe: the jar keeps cookies of an IP address host (127.0.0.1).
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout
        )

    async def close(self) -> None:
        await self.http.close()

    async def authorize(self, client_id: str) -> str:
        """``/oauth2/authorize``'s answer: the Location it redirects to."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": "openid email offline_access",
                "state": "s",
                "nonce": "n",
                "code_challenge": CHALLENGE,
                "code_challenge_method": "S256",
            }
        )
        async with self.http.get(
            f"{self.base}/oauth2/authorize?{query}", allow_redirects=False
        ) as response:
            await response.read()
            if response.status != 302:
                raise BenchError(f"authorize answered {response.status}")
            return response.headers["Location"]

    async def sign_in(self, client_id: str, email: str) -> None:
        sign_in = urljoin(self.base, await self.authorize(client_id))
        if urlsplit(sign_in).path != "/ui/sign-in":
            raise BenchError(f"authorize did not ask for a sign-in: {sign_in}")
        async with self.http.get(sign_in) as response:
            found = CSRF.search(await response.text())
        if found is None:
            raise BenchError("the sign-in page has no CSRF token")
        form = {
            "email": email,
            "password": PASSWORD,
            "action": "password",
            "csrf_token": unescape(found.group(1)),
        }
        async with self.http.post(sign_in, data=form, allow_redirects=False) as response:
            await response.read()
            if response.status != 303:
                raise BenchError(f"the hosted sign-in answered {response.status}")

    async def code(self, client_id: str) -> str:
        location = await self.authorize(client_id)
        codes = parse_qs(urlsplit(location).query).get("code")
        if not location.startswith(REDIRECT_URI) or not codes:
            raise BenchError(f"authorize did not issue a code: {location}")
        return codes[0]


def merged(name: str, slices: list[PhaseResult]) -> PhaseResult:
    """The slices of one phase as one: their requests, seconds and CPU shares summed."""
    stats = Stats()
    for part in slices:
        stats.latencies.extend(part.stats.latencies)
        stats.errors += part.stats.errors
    seconds = sum(part.seconds for part in slices)
    cpu = [part.server_cpu for part in slices]
    server_cpu = (
        None
        if any(c is None for c in cpu)
        else sum((c or 0.0) * part.seconds for c, part in zip(cpu, slices, strict=True)) / seconds
    )
    client_cpu = sum(part.client_cpu * part.seconds for part in slices) / seconds
    return PhaseResult(name, seconds, stats, server_cpu, client_cpu)


@dataclass
class RoundTrips:
    count: int
    authorize_cpu: float  # server seconds, idle share removed
    exchange_cpu: float
    idle_share: float  # of one core, the idle server's

    @property
    def total_ms(self) -> float:
        return (self.authorize_cpu + self.exchange_cpu) / self.count * 1000


async def idle_share(server: Server, seconds: float) -> float:
    """The idle server's CPU share (its background pollers), to subtract from a loop."""
    before, started = server.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    after = server.cpu_seconds()
    if before is None or after is None:
        return 0.0
    return (after - before) / (time.perf_counter() - started)


async def round_trips(
    server: Server, http: aiohttp.ClientSession, browser: Browser, client_id: str,
    authorization: str, count: int,
) -> RoundTrips:  # fmt: skip
    for _ in range(20):  # warm-up
        await exchange(http, server.base, authorization, await browser.code(client_id))
    idle = await idle_share(server, 2.0)
    authorize_cpu = exchange_cpu = 0.0
    wall_authorize = wall_exchange = 0.0
    for _ in range(count):
        cpu_0, wall_0 = server.cpu_seconds() or 0.0, time.perf_counter()
        code = await browser.code(client_id)
        cpu_1, wall_1 = server.cpu_seconds() or 0.0, time.perf_counter()
        await exchange(http, server.base, authorization, code)
        cpu_2, wall_2 = server.cpu_seconds() or 0.0, time.perf_counter()
        authorize_cpu += cpu_1 - cpu_0
        exchange_cpu += cpu_2 - cpu_1
        wall_authorize += wall_1 - wall_0
        wall_exchange += wall_2 - wall_1
    return RoundTrips(
        count,
        max(0.0, authorize_cpu - idle * wall_authorize),
        max(0.0, exchange_cpu - idle * wall_exchange),
        idle,
    )


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{secrets.token_hex(6)}"
    database_url = _admin_url(args.database_server_url).set(database=name).render_as_string(False)
    port = free_port()
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),
            "IDENTITY_PORT": str(port),
            "IDENTITY_ISSUER": f"http://127.0.0.1:{port}",
            "IDENTITY_LOG_LEVEL": "warning",
            "IDENTITY_BCRYPT_ROUNDS": str(args.rounds),
            "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
        }
    )
    log = open_log(args.server_log)
    server = Server(env, port, log)
    created = False
    try:
        await create_database(args.database_server_url, name)
        created = True
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        await create_users(database_url, args.concurrency, args.rounds, 1)
        printed = await run_command(
            [
                sys.executable,
                "-m",
                "identity.entrypoints.cli",
                "clients",
                "create",
                "--name",
                "bench",
                "--redirect-uri",
                REDIRECT_URI,
                "--first-party",
            ],
            env,
            "create a client",
        )
        secret = printed.strip().splitlines()[-1]
        client_id = json.loads(printed[printed.index("{\n") : printed.rindex("}") + 1])["client_id"]
        authorization = basic(client_id, secret)

        await server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await server.wait_healthy(http)
            client = Client(http, server.base)
            browser = Browser(server.base, timeout)
            try:
                await browser.sign_in(client_id, user_email(0))
                sessions: list[Tokens] = [
                    await client.tokens_for(user_email(i), time.perf_counter() + 60)
                    for i in range(args.concurrency)
                ]
                chains = []
                for _ in range(args.concurrency):
                    code = await browser.code(client_id)
                    answer = await exchange(http, server.base, authorization, code)
                    chains.append([answer["refresh_token"]])

                async with profiled(args.profile, server, "client_credentials"):
                    cc, _ = await run_phase(
                        "client_credentials",
                        server,
                        args.warmup,
                        args.duration,
                        [cc_worker(http, server.base, authorization)] * args.concurrency,
                    )
                oauth_slices: list[PhaseResult] = []
                api_slices: list[PhaseResult] = []
                oauth_workers = [
                    oauth_refresh_worker(http, server.base, authorization, c) for c in chains
                ]
                api_workers = [
                    refresh_worker(client, user_email(i), sessions[i])
                    for i in range(args.concurrency)
                ]
                each = args.duration / args.slices
                for turn in range(args.slices * 2):
                    # A B, B A, A B, ...: each pair in turn starts with the other.
                    if (turn % 2 == 0) == (turn // 2 % 2 == 0):
                        async with profiled(args.profile, server, f"oauth_refresh_{turn}"):
                            part, _ = await run_phase(
                                "oauth2 refresh", server, args.warmup / 2, each, oauth_workers
                            )
                        oauth_slices.append(part)
                    else:
                        async with profiled(args.profile, server, f"auth_refresh_{turn}"):
                            part, _ = await run_phase(
                                "auth refresh", server, args.warmup / 2, each, api_workers
                            )
                        api_slices.append(part)
                async with profiled(args.profile, server, "round_trip"):
                    trips = await round_trips(
                        server, http, browser, client_id, authorization, args.codes
                    )
            finally:
                await browser.close()
    finally:
        await server.stop()
        if created:
            await drop_database(args.database_server_url, name)
    return report(
        args, cc, merged("oauth2 refresh", oauth_slices), merged("auth refresh", api_slices), trips
    )


def report(
    args: argparse.Namespace,
    cc: PhaseResult,
    oauth_refresh: PhaseResult,
    api_refresh: PhaseResult,
    trips: RoundTrips,
) -> bool:
    share = oauth_refresh.rate / api_refresh.rate if api_refresh.rate else 0.0

    def per_request(phase: PhaseResult) -> float | None:
        if phase.server_cpu is None or not phase.rate:
            return None
        return phase.server_cpu / phase.rate * 1000

    def cpu(phase: PhaseResult) -> str:
        value = per_request(phase)
        return "?" if value is None else f"{value:.2f} ms CPU/request"

    oauth_cpu, api_cpu = per_request(oauth_refresh), per_request(api_refresh)
    cpu_ratio = f"; CPU {api_cpu / oauth_cpu:.0%}" if oauth_cpu and api_cpu else ""
    checks = [
        (
            f"client_credentials {cc.rate:,.0f}/s (p99 {cc.p99_ms:.1f} ms, {cpu(cc)})",
            f">= {TARGET_CLIENT_CREDENTIALS:,.0f}/s",
            cc.rate >= TARGET_CLIENT_CREDENTIALS,
        ),
        (
            f"refresh: /oauth2/token {oauth_refresh.rate:,.0f}/s ({cpu(oauth_refresh)}) vs "
            f"/auth/refresh-token {api_refresh.rate:,.0f}/s ({cpu(api_refresh)}): "
            f"rate {share:.0%}{cpu_ratio}",
            f">= {TARGET_REFRESH_SHARE:.0%} of /auth/refresh-token's rate",
            share >= TARGET_REFRESH_SHARE,
        ),
        (
            f"auth-code round trip {trips.total_ms:.2f} ms server CPU (authorize "
            f"{trips.authorize_cpu / trips.count * 1000:.2f} + exchange "
            f"{trips.exchange_cpu / trips.count * 1000:.2f}; idle server "
            f"{trips.idle_share:.1%} of a core, subtracted)",
            f"< {TARGET_ROUND_TRIP_CPU_MS:.0f} ms",
            trips.total_ms < TARGET_ROUND_TRIP_CPU_MS,
        ),
    ]
    print(
        f"\nidentity oauth bench: concurrency={args.concurrency} duration={args.duration:g}s "
        f"slices={args.slices} codes={args.codes}"
    )
    for measured, target, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {measured}  (target {target})")
    return all(passed for _, _, passed in checks)


def main() -> int:
    args = _parse()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    try:
        return 0 if asyncio.run(bench(args)) else 1
    except BenchError as error:
        print(f"bench/oauth.py: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
