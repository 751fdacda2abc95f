"""The authorization server's benchmarks (section 17), against one real ``identity serve``
on a fresh Postgres database.

    PYTHONPATH=. .venv/bin/python bench/oauth.py [--duration 5] [--concurrency 32]

1. ``client_credentials`` tokens per second at ``/oauth2/token`` (Basic client
   authentication, an RFC 9068 access token each). Target: at least 1,000/s.
2. The ``refresh_token`` grant at ``/oauth2/token`` against ``/auth/refresh-token``,
   the same number of token chains each, one phase after the other. Target: the
   grant at least as fast (>= 100 % of the JSON API's rate, within 5 % of noise).
3. The authorization-code round trip's server CPU: ``--codes`` sequential round trips,
   each ``/oauth2/authorize`` (a browser session present) then the code's exchange at
   ``/oauth2/token``. The authorize step runs the real ``AuthorizeFlow`` in this process
   against the same database (the served process has no hosted pages to sign a browser
   in yet), timed with ``process_time``; the exchange is the server's CPU. Target: the
   sum under 10 ms.

Exit status 0 when every target is met, 1 when one is missed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    HUGE_LIMIT,
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
from identity.application.oauth_server import AuthorizeRequest, RedirectToClient  # noqa: E402
from identity.application.ports import BrowserSessions, BrowserSignIn  # noqa: E402
from identity.entrypoints.container import Container  # noqa: E402
from identity.entrypoints.settings import load_settings  # noqa: E402

TARGET_CLIENT_CREDENTIALS = 1000.0
TARGET_REFRESH_SHARE = 0.95
TARGET_ROUND_TRIP_CPU_MS = 10.0
REDIRECT_URI = "https://rp.example/cb"
VERIFIER = "bench-verifier-" + "x" * 40
CHALLENGE = (
    base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
)


class OneBrowser(BrowserSessions):
    """Every browser is signed in as the sessions given (by cookie)."""

    def __init__(self) -> None:
        self.signed: dict[str, BrowserSignIn] = {}

    async def signed_in(
        self, tenant_id: uuid.UUID, cookies: Mapping[str, str]
    ) -> BrowserSignIn | None:
        return self.signed.get(cookies.get("bench", ""))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--codes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4, help="bcrypt cost of the users")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--server-log", default=None)
    return parser.parse_args()


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
    container: Container | None = None
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

            # In-process: the same database and key ring, a browser signed in per user.
            settings = load_settings(env)
            container = Container()
            container.settings.override(settings)
            ring = await container.key_store().load_ring(datetime.now(UTC))
            container.keyring.override(ring)
            browsers = OneBrowser()
            container.browser_sessions.override(browsers)
            flow = container.authorize_flow()

            sessions: list[Tokens] = []
            for index in range(args.concurrency):
                tokens = await client.tokens_for(user_email(index), time.perf_counter() + 60)
                sessions.append(tokens)
                claims = jwt.decode(tokens.access, options={"verify_signature": False})
                browsers.signed[str(index)] = BrowserSignIn(
                    uuid.UUID(claims["sid"]),
                    uuid.UUID(claims["sub"]),
                    datetime.now(UTC),
                    "aal1",
                    ("pwd",),
                )

            async def code_for(index: int) -> str:
                result = await flow(
                    AuthorizeRequest(
                        {
                            "response_type": "code",
                            "client_id": client_id,
                            "redirect_uri": REDIRECT_URI,
                            "scope": "openid email offline_access",
                            "state": "s",
                            "nonce": "n",
                            "code_challenge": CHALLENGE,
                            "code_challenge_method": "S256",
                        },
                        {"bench": str(index)},
                    )
                )
                if not isinstance(result, RedirectToClient) or "code" not in result.params:
                    raise BenchError(f"authorize did not issue a code: {result}")
                return result.params["code"]

            chains = []
            for index in range(args.concurrency):
                answer = await exchange(http, server.base, authorization, await code_for(index))
                chains.append([answer["refresh_token"]])

            cc, _ = await run_phase(
                "client_credentials",
                server,
                args.warmup,
                args.duration,
                [cc_worker(http, server.base, authorization) for _ in range(args.concurrency)],
            )
            oauth_refresh, _ = await run_phase(
                "oauth2 refresh",
                server,
                args.warmup,
                args.duration,
                [oauth_refresh_worker(http, server.base, authorization, c) for c in chains],
            )
            api_refresh, _ = await run_phase(
                "auth refresh",
                server,
                args.warmup,
                args.duration,
                [
                    refresh_worker(client, user_email(i), sessions[i])
                    for i in range(args.concurrency)
                ],
            )

            authorize_cpu = 0.0
            server_0 = server.cpu_seconds()
            for turn in range(args.codes):
                started = time.process_time()
                code = await code_for(turn % args.concurrency)
                authorize_cpu += time.process_time() - started
                await exchange(http, server.base, authorization, code)
            server_1 = server.cpu_seconds()
            exchange_cpu = (
                (server_1 - server_0) if server_0 is not None and server_1 is not None else 0.0
            )
            round_trip_ms = (authorize_cpu + exchange_cpu) / args.codes * 1000
    finally:
        await server.stop()
        if container is not None:
            await container.engine().dispose()
        if created:
            await drop_database(args.database_server_url, name)
    return report(args, cc, oauth_refresh, api_refresh, round_trip_ms, authorize_cpu, exchange_cpu)


def report(
    args: argparse.Namespace,
    cc: PhaseResult,
    oauth_refresh: PhaseResult,
    api_refresh: PhaseResult,
    round_trip_ms: float,
    authorize_cpu: float,
    exchange_cpu: float,
) -> bool:
    share = oauth_refresh.rate / api_refresh.rate if api_refresh.rate else 0.0

    def cpu(phase: PhaseResult) -> str:
        if phase.server_cpu is None or not phase.rate:
            return "?"
        return f"{phase.server_cpu / phase.rate * 1000:.2f} ms CPU/request"

    checks = [
        (
            f"client_credentials {cc.rate:,.0f}/s (p99 {cc.p99_ms:.1f} ms, {cpu(cc)})",
            f">= {TARGET_CLIENT_CREDENTIALS:,.0f}/s",
            cc.rate >= TARGET_CLIENT_CREDENTIALS,
        ),
        (
            f"refresh: /oauth2/token {oauth_refresh.rate:,.0f}/s ({cpu(oauth_refresh)}), "
            f"/auth/refresh-token {api_refresh.rate:,.0f}/s ({cpu(api_refresh)}); {share:.0%}",
            f">= {TARGET_REFRESH_SHARE:.0%} of /auth/refresh-token",
            share >= TARGET_REFRESH_SHARE,
        ),
        (
            f"auth-code round trip {round_trip_ms:.2f} ms CPU (authorize "
            f"{authorize_cpu / args.codes * 1000:.2f} + exchange "
            f"{exchange_cpu / args.codes * 1000:.2f})",
            f"< {TARGET_ROUND_TRIP_CPU_MS:.0f} ms",
            round_trip_ms < TARGET_ROUND_TRIP_CPU_MS,
        ),
    ]
    print(
        f"\nidentity oauth bench: concurrency={args.concurrency} duration={args.duration:g}s "
        f"codes={args.codes}"
    )
    for measured, target, passed in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {measured}  (target {target})")
    return all(passed for _, _, passed in checks)


def main() -> int:
    args = _parse()
    try:
        return 0 if asyncio.run(bench(args)) else 1
    except BenchError as error:
        print(f"bench/oauth.py: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
