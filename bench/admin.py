"""The admin API with a million users: lookups by email, list pages, and the key check.

Creates ``identity_bench_<random>``, migrates it, inserts ``--users`` verified
users into the ``default`` tenant with one ``generate_series`` statement, starts
one ``identity serve`` process, mints an API key with the CLI, then measures in
one run:

* ``GET /admin/users?email=`` (a random existing address each time) and
  ``GET /admin/users?limit=50`` pages (the first page and pages reached by
  following ``next_cursor``): latency at ``--latency-concurrency`` clients,
  target p99 < 20 ms;
* ``GET /admin/users/{id}`` (API key check + one user read) and ``GET /auth/me``
  (access token check + the session read) at ``--concurrency`` clients: req/s
  side by side, so the key check can be compared with the bearer check.

The server is always stopped and the database always dropped.

    PYTHONPATH=. .venv/bin/python bench/admin.py --users 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime
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
    HUGE_LIMIT,
    PASSWORD,
    REQUEST_TIMEOUT_SECONDS,
    BenchError,
    Client,
    PhaseResult,
    Server,
    Stats,
    Window,
    Worker,
    _admin_url,
    _child_env,
    create_database,
    drop_database,
    free_port,
    open_log,
    run_command,
    run_phase,
    timed,
)
from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor  # noqa: E402

TARGET_P99_MS = 20.0
SAMPLE = 2000  # ids and addresses drawn for the lookups
PAGES_PER_WALK = 5


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=1_000_000, help="users (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=12, help="bcrypt cost (default 12)")
    parser.add_argument(
        "--latency-concurrency", type=int, default=4, help="clients of the latency phases (4)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=32, help="clients of the req/s phases (32)"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds (2)")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--server-log", help="keep the server's output in this file")
    args = parser.parse_args(argv)
    if args.users < SAMPLE:
        parser.error(f"--users must be at least {SAMPLE}")
    return args


def email_of(index: int) -> str:
    return f"admin-bench-{index}@example.com"


async def insert_users(database_url: str, count: int, rounds: int) -> list[tuple[str, str]]:
    """``count`` verified users, one statement; returns a sample of (id, email)."""
    with make_hasher_executor(1) as pool:
        password_hash = await BcryptSha256Hasher(rounds, pool).hash(PASSWORD)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            tenant_id = (
                await connection.execute(text("SELECT id FROM tenants WHERE slug = 'default'"))
            ).scalar_one()
            # Creation times a millisecond apart, so the list order is the insertion order.
            await connection.execute(
                text(
                    "INSERT INTO users (id, tenant_id, email, normalized_email, password_hash, "
                    "full_name, is_verified, is_active, verified_at, created_at, updated_at) "
                    "SELECT gen_random_uuid(), :tenant, 'admin-bench-' || i || '@example.com', "
                    "'admin-bench-' || i || '@example.com', :hash, 'Bench User ' || i, true, "
                    "true, :now, CAST(:start AS timestamptz) + i * interval '1 millisecond', :now "
                    "FROM generate_series(0, :count - 1) AS i"
                ),
                {
                    "tenant": tenant_id,
                    "hash": password_hash,
                    "now": datetime.now(UTC),
                    "start": datetime(2020, 1, 1, tzinfo=UTC),
                    "count": count,
                },
            )
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE users"))
            rows = await connection.execute(
                text("SELECT id::text, email FROM users TABLESAMPLE SYSTEM (1) LIMIT :n"),
                {"n": SAMPLE},
            )
            return [(row[0], row[1]) for row in rows]
    finally:
        await engine.dispose()


class Admin:
    def __init__(self, http: aiohttp.ClientSession, base: str, key: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {key}"}

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.get(
            f"{self.base}{path}", headers=self.headers, params=params
        ) as response:
            if response.status == 200:
                return 200, await response.json()
            await response.read()
            return response.status, None


def report(args: argparse.Namespace, rows: list[tuple[PhaseResult, str, bool | None]]) -> bool:
    print()
    print(
        f"identity admin: users={args.users:,} latency-concurrency={args.latency_concurrency} "
        f"concurrency={args.concurrency} duration={args.duration:g}s cpus={os.cpu_count()}"
    )
    header = (
        f"{'phase':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'srv cpu':>8}  {'target':<18} result"
    )
    print(header)
    print("-" * len(header))
    passed = True
    for result, target, ok in rows:
        if ok is not None:
            passed &= ok
        mark = "-" if ok is None else ("PASS" if ok else "FAIL")
        cpu = f"{result.server_cpu:.0%}" if result.server_cpu is not None else "-"
        print(
            f"{result.name:<36} {result.rate:>9.1f} {result.p50_ms:>8.1f} {result.p99_ms:>8.1f} "
            f"{result.stats.errors:>7} {cpu:>8}  {target:<18} {mark}"
        )
        if result.stats.statuses:
            print(f"  errors: {result.stats.statuses}")
    print("-" * len(header))
    return passed


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{secrets.token_hex(6)}"
    database_url = _admin_url(args.database_server_url).set(database=name).render_as_string(False)
    port = free_port()
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),
            "IDENTITY_PORT": str(port),
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
        print(f"creating database {name} ...", flush=True)
        await create_database(args.database_server_url, name)
        created = True
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        started = time.perf_counter()
        print(f"inserting {args.users:,} users ...", flush=True)
        sample = await insert_users(database_url, args.users, args.rounds)
        print(f"  done in {time.perf_counter() - started:.1f}s", flush=True)
        output = await run_command(
            [
                sys.executable,
                "-m",
                "identity.entrypoints.cli",
                "apikeys",
                "create",
                "--name",
                "bench",
                "--scopes",
                "users:read",
            ],
            env,
            "apikeys create",
        )
        key = output.strip().splitlines()[-1]
        if not key.startswith("idk_"):
            raise BenchError("the CLI printed no key")

        await server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await server.wait_healthy(http)
            admin = Admin(http, server.base, key)
            client = Client(http, server.base)
            deadline = time.perf_counter() + 120.0
            tokens = await asyncio.gather(
                *(
                    client.tokens_for(sample[i % len(sample)][1], deadline)
                    for i in range(args.concurrency)
                )
            )
            rng = random.Random(4711)

            def by_email() -> Worker:
                async def work(window: Window, stats: Stats) -> None:
                    while time.perf_counter() < window.ends:
                        _, email = rng.choice(sample)
                        await timed(stats, window, admin.get("/admin/users", {"email": email}))

                return work

            def pages() -> Worker:
                async def work(window: Window, stats: Stats) -> None:
                    while time.perf_counter() < window.ends:
                        params = {"limit": "50"}
                        for _ in range(PAGES_PER_WALK):
                            body = await timed(stats, window, admin.get("/admin/users", params))
                            if not body or not body["next_cursor"]:
                                break
                            params = {"limit": "50", "cursor": body["next_cursor"]}

                return work

            def by_id() -> Worker:
                async def work(window: Window, stats: Stats) -> None:
                    while time.perf_counter() < window.ends:
                        user_id, _ = rng.choice(sample)
                        await timed(stats, window, admin.get(f"/admin/users/{user_id}"))

                return work

            def me(access: str) -> Worker:
                async def work(window: Window, stats: Stats) -> None:
                    while time.perf_counter() < window.ends:
                        await timed(stats, window, client.me(access))

                return work

            results = []
            for label, workers in (
                ("GET /admin/users?email=", [by_email() for _ in range(args.latency_concurrency)]),
                (
                    "GET /admin/users (pages of 50)",
                    [pages() for _ in range(args.latency_concurrency)],
                ),
                ("GET /admin/users/{id}", [by_id() for _ in range(args.concurrency)]),
                ("GET /auth/me", [me(t.access) for t in tokens]),
            ):
                print(f"phase {label} ...", flush=True)
                result, _ = await run_phase(label, server, args.warmup, args.duration, workers)
                results.append(result)
        email, page, user, me_result = results
        rows: list[tuple[PhaseResult, str, bool | None]] = [
            (email, f"p99 < {TARGET_P99_MS:.0f} ms", email.p99_ms < TARGET_P99_MS),
            (page, f"p99 < {TARGET_P99_MS:.0f} ms", page.p99_ms < TARGET_P99_MS),
            (user, "beside /auth/me", None),
            (me_result, "", None),
        ]
        return report(args, rows)
    finally:
        await server.stop()
        log.close()
        if created:
            try:
                await drop_database(args.database_server_url, name)
            except Exception as error:
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
