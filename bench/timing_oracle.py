"""Does the response time of code requests tell whether an email has an account?

Starts one ``identity serve`` process on a fresh Postgres database with
``--requests`` verified accounts (each with one passkey), then, for ``register``,
``request-otp``, ``verify-otp`` (a wrong code) and email-first passkey options
(``/auth/passkeys/login/options``: the account's passkeys, or decoys), sends
``--requests`` requests for known emails and as many for unknown ones, interleaved
in random order, one at a time over one keep-alive connection, and prints Welch's
t statistic of the two samples of response times per endpoint. |t| < 3: no
difference this many samples can see.

    PYTHONPATH=. .venv/bin/python bench/timing_oracle.py --requests 2000
    PYTHONPATH=. .venv/bin/python bench/timing_oracle.py --only passkey-options

Known emails are verified accounts; for ``verify-otp`` each holds a live login
code (asked for in the ``request-otp`` phase), so a wrong code is counted
against it. Unknown emails are fresh each time.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
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

HUGE_LIMIT = "100000000/minute"
WARMUP_REQUESTS = 200
TARGET_T = 3.0


def welch_t(a: list[float], b: list[float]) -> float:
    """Welch's t statistic of the difference of the means of ``a`` and ``b``."""
    va, vb = statistics.variance(a), statistics.variance(b)
    return (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va / len(a) + vb / len(b))


async def add_passkeys(database_url: str, emails: list[str]) -> None:
    """One passkey row per known account: its options list it, unknown emails get decoys.

    Only the options are timed, so the key needs no private half.
    """
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO passkeys (id, tenant_id, user_id, credential_id, public_key, "
                    "sign_count, transports, backup_eligible, backed_up, aaguid, name, "
                    "created_at) SELECT gen_random_uuid(), tenant_id, id, "
                    "decode(md5(random()::text) || md5(random()::text), 'hex'), "
                    "'\\xa5'::bytea, 0, 'hybrid,internal', true, true, "
                    "'00000000-0000-0000-0000-000000000000', 'Bench', now() "
                    "FROM users WHERE normalized_email = ANY(:emails)"
                ),
                {"emails": [email.casefold() for email in emails]},
            )
    finally:
        await engine.dispose()


def unknown_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:16]}@example.com"


async def measure(
    http: aiohttp.ClientSession,
    base: str,
    path: str,
    body: Callable[[str], dict[str, Any]],
    known: list[str],
    expected: int,
) -> tuple[list[float], list[float]]:
    """Milliseconds per answer for known and unknown emails, sent interleaved at random."""
    plan = [("known", email) for email in known] + [("unknown", unknown_email()) for _ in known]
    random.shuffle(plan)
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    for kind, email in plan:
        started = time.perf_counter()
        async with http.post(base + path, json=body(email)) as response:
            await response.read()
            elapsed = (time.perf_counter() - started) * 1000
        if response.status != expected:
            raise BenchError(f"{path} answered {response.status}, expected {expected}")
        times[kind].append(elapsed)
    return times["known"], times["unknown"]


async def warm_up(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(WARMUP_REQUESTS):
        async with http.post(
            base + "/auth/request-otp", json={"email": unknown_email(), "purpose": "login"}
        ) as response:
            await response.read()


async def queue_drained(database_url: str) -> None:
    """Wait until the worker has issued every requested code and the outbox is empty."""
    engine = create_async_engine(database_url)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            async with engine.connect() as connection:
                waiting = (
                    await connection.execute(
                        text(
                            "SELECT (SELECT count(*) FROM code_requests) + "
                            "(SELECT count(*) FROM outbox WHERE state = 'pending')"
                        )
                    )
                ).scalar_one()
            if waiting == 0:
                return
            await asyncio.sleep(0.2)
        raise BenchError("the code requests were not carried out within 120 s")
    finally:
        await engine.dispose()


def report(name: str, known: list[float], unknown: list[float]) -> bool:
    t = welch_t(known, unknown)
    passed = abs(t) < TARGET_T
    # The smallest difference of means this run could have told apart (|t| = 3):
    # on a busy machine the noise, not the service, sets it.
    resolution = TARGET_T * math.sqrt(
        statistics.variance(known) / len(known) + statistics.variance(unknown) / len(unknown)
    )
    print(
        f"{name:<12} known: median {statistics.median(known):7.3f} ms, mean "
        f"{statistics.fmean(known):7.3f} ms, sd {statistics.stdev(known):6.3f} (n={len(known)})"
        f" | unknown: median {statistics.median(unknown):7.3f} ms, mean "
        f"{statistics.fmean(unknown):7.3f} ms, sd {statistics.stdev(unknown):6.3f} "
        f"(n={len(unknown)}) | Welch t = {t:+6.2f} {'ok' if passed else 'ORACLE'}"
        f" (a difference of {resolution:.3f} ms would show)"
    )
    return passed


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
                "IDENTITY_BCRYPT_ROUNDS": "4",
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
        await create_users(database_url, args.requests, 4, 1)
        known = [user_email(index) for index in range(args.requests)]
        await add_passkeys(database_url, known)
        await server.start()
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as http:
            await server.wait_healthy(http)
            await warm_up(http, server.base)
            await queue_drained(database_url)
            passed = True
            phases: list[tuple[str, str, Callable[[str], dict[str, Any]], int]] = [
                ("register", "/auth/register", lambda email: {"email": email}, 202),
                (
                    "request-otp",
                    "/auth/request-otp",
                    lambda email: {"email": email, "purpose": "login"},
                    202,
                ),
                (
                    "verify-otp",
                    "/auth/verify-otp",
                    lambda email: {"email": email, "otp_code": "000000", "purpose": "login"},
                    400,
                ),
                (
                    "passkey-options",
                    "/auth/passkeys/login/options",
                    lambda email: {"email": email},
                    200,
                ),
            ]
            if args.only:
                phases = [phase for phase in phases if phase[0] in args.only]
            for label, path, body, status in phases:
                random.shuffle(known)
                samples = await measure(http, server.base, path, body, known, status)
                # Background work of this phase must not spill into the next one.
                await queue_drained(database_url)
                passed &= report(label, *samples)
        print(f"target |t| < {TARGET_T:g} per endpoint: {'met' if passed else 'MISSED'}")
        return passed
    except BenchError as error:
        print(f"failed: {error}\n{tail(log.name)}", file=sys.stderr)
        return False
    finally:
        await server.stop()
        await drop_database(args.database_server_url, name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind and endpoint")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=("register", "request-otp", "verify-otp", "passkey-options"),
        help="measure only these endpoints (default: all)",
    )
    args = parser.parse_args()
    return 0 if asyncio.run(bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
