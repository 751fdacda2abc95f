"""What a passkey sign-in costs the server, against a password sign-in on the same machine.

Starts one ``identity serve`` process on a fresh Postgres database with verified
users (bcrypt at ``--rounds``), registers a passkey for some of them over HTTP
with the tests' software authenticator (ES256), then runs

* ``--passkey`` passkey sign-ins (``login/options`` + ``login/verify``,
  discoverable), ``--concurrency`` at a time;
* ``--password`` password sign-ins (``/auth/login``), as many at a time;

and prints the server's CPU time per sign-in (user + system of the serve
process, from /proc) and the rate of each. Targets: a passkey sign-in costs
under 5 ms of server CPU, and passkey sign-ins run at least 20x the rate of
password sign-ins.

    PYTHONPATH=. .venv/bin/python bench/passkeys.py --rounds 12
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    PASSWORD,
    BenchError,
    Server,
    _admin_url,
    _child_env,
    create_database,
    create_users,
    drop_database,
    free_port,
    open_log,
    run_command,
    tail,
    user_email,
)
from tests.authenticator import SoftwareAuthenticator  # noqa: E402

HUGE_LIMIT = "100000000/minute"
RP_ID = "localhost"
ORIGIN = "http://localhost"
TARGET_CPU_MS = 5.0
TARGET_RATIO = 20.0


async def post(http: aiohttp.ClientSession, url: str, body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.post(url, json=body, headers=headers) as response:
        data = await response.json(content_type=None)
        if response.status not in (200, 201):
            raise BenchError(f"{url} answered {response.status}: {data}")
        return data


async def enrol(http: aiohttp.ClientSession, base: str, email: str) -> SoftwareAuthenticator:
    tokens = await post(http, f"{base}/auth/login", {"email": email, "password": PASSWORD})
    authenticator = SoftwareAuthenticator(ORIGIN)
    flow = await post(http, f"{base}/auth/passkeys/register/options", {}, tokens["access_token"])
    credential = authenticator.create(flow["publicKey"])
    await post(
        http,
        f"{base}/auth/passkeys/register/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
        tokens["access_token"],
    )
    return authenticator


async def passkey_sign_in(
    http: aiohttp.ClientSession, base: str, authenticator: SoftwareAuthenticator
) -> None:
    flow = await post(http, f"{base}/auth/passkeys/login/options", {})
    credential = authenticator.get(flow["publicKey"])
    await post(
        http,
        f"{base}/auth/passkeys/login/verify",
        {"flow_id": flow["flow_id"], "credential": credential},
    )


async def password_sign_in(http: aiohttp.ClientSession, base: str, email: str) -> None:
    await post(http, f"{base}/auth/login", {"email": email, "password": PASSWORD})


async def run(count: int, concurrency: int, one: Any) -> float:
    """Run ``one(index)`` ``count`` times, ``concurrency`` at a time; the wall seconds."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def measure(server: Server, count: int, concurrency: int, one: Any) -> tuple[float, float]:
    """(server CPU ms per call, calls per second)."""
    before = server.cpu_seconds()
    elapsed = await run(count, concurrency, one)
    after = server.cpu_seconds()
    if before is None or after is None:
        raise BenchError("the server's CPU time is read from /proc (Linux only)")
    return (after - before) * 1000 / count, count / elapsed


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{uuid.uuid4().hex[:12]}"
    url = _admin_url(args.database_server_url).set(database=name)
    database_url = url.render_as_string(hide_password=False)
    log = open_log(None)
    await create_database(args.database_server_url, name)
    server = Server(
        _child_env(
            {
                "IDENTITY_DATABASE_URL": database_url,
                "IDENTITY_SECRET_KEY": secrets.token_urlsafe(48),
                "IDENTITY_LOG_LEVEL": "warning",
                "IDENTITY_BCRYPT_ROUNDS": str(args.rounds),
                "IDENTITY_WEBAUTHN_RP_ID": RP_ID,
                "IDENTITY_WEBAUTHN_ORIGINS": ORIGIN,
                **{
                    f"IDENTITY_RATE_LIMIT_{limit}": HUGE_LIMIT
                    for limit in ("GLOBAL", "LOGIN", "OTP_REQUEST", "OTP_VERIFY")
                },
            }
        ),
        free_port(),
        log,
    )
    try:
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"],
            _child_env({"IDENTITY_DATABASE_URL": database_url, "IDENTITY_SECRET_KEY": "x" * 40}),
            "migrate",
        )
        await create_users(database_url, args.users, args.rounds, 1)
        await server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            await server.wait_healthy(http)
            base = server.base
            authenticators = [await enrol(http, base, user_email(i)) for i in range(args.users)]
            # Warm-up: first-call costs (imports, pools) are not the steady state.
            for authenticator in authenticators:
                await passkey_sign_in(http, base, authenticator)
            passkey_cpu, passkey_rate = await measure(
                server,
                args.passkey,
                args.concurrency,
                lambda i: passkey_sign_in(http, base, authenticators[i % len(authenticators)]),
            )
            password_cpu, password_rate = await measure(
                server,
                args.password,
                args.concurrency,
                lambda i: password_sign_in(http, base, user_email(i % args.users)),
            )
        ratio = passkey_rate / password_rate
        cpu_ok = passkey_cpu < TARGET_CPU_MS
        ratio_ok = ratio >= TARGET_RATIO
        print(
            f"passkey sign-in (options + verify): {passkey_cpu:6.2f} ms server CPU, "
            f"{passkey_rate:7.1f}/s (n={args.passkey}) "
            f"| target < {TARGET_CPU_MS:g} ms: {'met' if cpu_ok else 'MISSED'}"
        )
        print(
            f"password sign-in (bcrypt {args.rounds}): {password_cpu:6.2f} ms server CPU, "
            f"{password_rate:7.1f}/s (n={args.password})"
        )
        print(
            f"rate ratio passkey/password: {ratio:5.1f}x (CPU ratio "
            f"{password_cpu / passkey_cpu:5.1f}x) | target >= {TARGET_RATIO:g}x: "
            f"{'met' if ratio_ok else 'MISSED'}"
        )
        return cpu_ok and ratio_ok
    except BenchError as error:
        print(f"failed: {error}\n{tail(log.name)}", file=sys.stderr)
        return False
    finally:
        await server.stop()
        await drop_database(args.database_server_url, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost of the passwords")
    parser.add_argument("--users", type=int, default=8, help="users, each with one passkey")
    parser.add_argument("--passkey", type=int, default=400, help="passkey sign-ins to time")
    parser.add_argument("--password", type=int, default=24, help="password sign-ins to time")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    args = parser.parse_args()
    return 0 if asyncio.run(bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
