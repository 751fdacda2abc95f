"""Organizations: tokens with org claims against tokens without, and a big member list.

Creates ``identity_bench_<random>``, migrates it, inserts into the ``default``
tenant ``--orgs`` organizations (100,000) and ``--members`` verified users
(10,000), all members of one of those organizations, starts one ``identity
serve`` process, then measures in one run:

* ``GET /auth/me`` and ``POST /auth/refresh-token`` of sessions switched into
  the organization (access tokens with ``org_id``, ``org_slug``, ``org_roles``,
  ``permissions``; each refresh recomputes them) beside sessions in no
  organization, each pair run twice in A-B-B-A order: target org within 5% of
  no org (req/s);
* ``GET /admin/organizations/{id}/members?limit=50``, walking the 10,000
  members by ``next_cursor``: target p99 < 20 ms;
* ``GET /admin/organizations?limit=50`` pages of the 100,000 organizations
  (the tenant's size must change nothing): target p99 < 20 ms.

The server is always stopped and the database always dropped.

    PYTHONPATH=. .venv/bin/python bench/orgs.py --duration 4
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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

from bench.admin import Admin, report  # noqa: E402
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
    Worker,
    _admin_url,
    _child_env,
    create_database,
    drop_database,
    free_port,
    me_worker,
    open_log,
    refresh_worker,
    run_command,
    run_phase,
    timed,
)
from identity.adapters.bcrypt_hasher import BcryptSha256Hasher, make_hasher_executor  # noqa: E402

TARGET_P99_MS = 20.0
TARGET_RATIO = 0.95  # org claims within 5% of none


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orgs", type=int, default=100_000, help="organizations (100,000)")
    parser.add_argument("--members", type=int, default=10_000, help="members of one org (10,000)")
    parser.add_argument("--rounds", type=int, default=4, help="bcrypt cost (default 4)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients per group (8)")
    parser.add_argument(
        "--latency-concurrency", type=int, default=4, help="clients of the list phases (4)"
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per phase (3)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds (1)")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--server-log", help="keep the server's output in this file")
    args = parser.parse_args(argv)
    if args.members < 2 * args.concurrency:
        parser.error("--members must be at least twice --concurrency")
    return args


def email_of(index: int) -> str:
    return f"orgs-bench-{index}@example.com"


async def populate(database_url: str, args: argparse.Namespace) -> str:
    """The organizations, the users and the memberships; the big organization's id."""
    with make_hasher_executor(1) as pool:
        password_hash = await BcryptSha256Hasher(args.rounds, pool).hash(PASSWORD)
    now = datetime.now(UTC)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            tenant = (
                await connection.execute(text("SELECT id FROM tenants WHERE slug = 'default'"))
            ).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO organizations (id, tenant_id, slug, name, data, created_at) "
                    "SELECT gen_random_uuid(), :tenant, 'org-' || i, 'Org ' || i, "
                    "CAST('{}' AS json), CAST(:start AS timestamptz) + i * interval '1 ms' "
                    "FROM generate_series(0, :count - 1) AS i"
                ),
                {"tenant": tenant, "start": start, "count": args.orgs},
            )
            await connection.execute(
                text(
                    "INSERT INTO users (id, tenant_id, email, normalized_email, password_hash, "
                    "is_verified, is_active, verified_at, created_at, updated_at) "
                    "SELECT gen_random_uuid(), :tenant, 'orgs-bench-' || i || '@example.com', "
                    "'orgs-bench-' || i || '@example.com', :hash, true, true, :now, "
                    "CAST(:start AS timestamptz) + i * interval '1 ms', :now "
                    "FROM generate_series(0, :count - 1) AS i"
                ),
                {
                    "tenant": tenant,
                    "hash": password_hash,
                    "now": now,
                    "start": start,
                    "count": args.members,
                },
            )
            big = (
                await connection.execute(
                    text("SELECT id FROM organizations WHERE tenant_id = :t AND slug = 'org-0'"),
                    {"t": tenant},
                )
            ).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO memberships (id, tenant_id, organization_id, user_id, created_at) "
                    "SELECT gen_random_uuid(), tenant_id, :org, id, created_at FROM users "
                    "WHERE tenant_id = :tenant"
                ),
                {"tenant": tenant, "org": big},
            )
            await connection.execute(
                text(
                    "INSERT INTO membership_roles "
                    "(membership_id, role, tenant_id, organization_id) "
                    "SELECT id, 'member', tenant_id, organization_id FROM memberships "
                    "WHERE organization_id = :org"
                ),
                {"org": big},
            )
            await connection.execute(
                text(
                    "INSERT INTO org_roles (tenant_id, name, description, permissions, created_at) "
                    "VALUES (:tenant, 'member', '', CAST(:perms AS json), :now)"
                ),
                {"tenant": tenant, "perms": '["invoices:read", "reports:read"]', "now": now},
            )
        async with engine.begin() as connection:
            for table in ("organizations", "users", "memberships", "membership_roles"):
                await connection.execute(text(f"ANALYZE {table}"))
        return str(big)
    finally:
        await engine.dispose()


async def switch(http: aiohttp.ClientSession, base: str, org: str, tokens: Tokens) -> None:
    async with http.post(
        f"{base}/auth/organizations/{org}/switch",
        headers={"Authorization": f"Bearer {tokens.access}"},
    ) as response:
        if response.status != 200:
            raise BenchError(f"switch answered {response.status}: {await response.text()}")
        body = await response.json()
    tokens.access = body["access_token"]


def pages_worker(admin: Admin, path: str) -> Worker:
    async def work(window: Window, stats: Stats) -> None:
        params = {"limit": "50"}
        while time.perf_counter() < window.ends:
            body: Any = await timed(stats, window, admin.get(path, params))
            cursor = body.get("next_cursor") if body else None
            params = {"limit": "50", "cursor": cursor} if cursor else {"limit": "50"}

    return work


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
            # Grace 0: every refresh in the chain really rotates (and recomputes claims).
            "IDENTITY_REFRESH_REUSE_GRACE": "0",
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
        print(f"inserting {args.orgs:,} organizations, {args.members:,} members ...", flush=True)
        big = await populate(database_url, args)
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
                "organizations:manage",
            ],
            env,
            "apikeys create",
        )
        key = output.strip().splitlines()[-1]
        if not key.startswith("idk_"):
            raise BenchError("the CLI printed no key")

        await server.start()
        connector = aiohttp.TCPConnector(limit=2 * args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await server.wait_healthy(http)
            admin = Admin(http, server.base, key)
            client = Client(http, server.base)
            deadline = time.perf_counter() + 120.0
            emails = [email_of(i) for i in range(2 * args.concurrency)]
            plain = [await client.tokens_for(e, deadline) for e in emails[: args.concurrency]]
            inside = [await client.tokens_for(e, deadline) for e in emails[args.concurrency :]]
            for tokens in inside:
                await switch(http, server.base, big, tokens)

            phases: list[tuple[str, list[Worker]]] = []
            for round_ in (1, 2):
                me_pair = [
                    ("GET /auth/me (no org)", [me_worker(client, t) for t in plain]),
                    ("GET /auth/me (org claims)", [me_worker(client, t) for t in inside]),
                ]
                refresh_pair = [
                    (
                        "refresh (no org)",
                        [refresh_worker(client, e, t) for e, t in zip(emails, plain, strict=False)],
                    ),
                    (
                        "refresh (org claims)",
                        [
                            refresh_worker(client, e, t)
                            for e, t in zip(emails[args.concurrency :], inside, strict=False)
                        ],
                    ),
                ]
                order = (lambda pair: pair) if round_ == 1 else (lambda pair: pair[::-1])
                phases += order(me_pair) + order(refresh_pair)
            members_path = f"/admin/organizations/{big}/members"
            phases.append(
                (
                    "GET .../members (10k, pages of 50)",
                    [pages_worker(admin, members_path) for _ in range(args.latency_concurrency)],
                )
            )
            phases.append(
                (
                    "GET /admin/organizations (pages)",
                    [
                        pages_worker(admin, "/admin/organizations")
                        for _ in range(args.latency_concurrency)
                    ],
                )
            )
            results: dict[str, list[PhaseResult]] = {}
            for label, workers in phases:
                print(f"phase {label} ...", flush=True)
                result, _ = await run_phase(label, server, args.warmup, args.duration, workers)
                results.setdefault(label, []).append(result)

        def merged(label: str) -> PhaseResult:
            found = results[label]
            stats = Stats()
            for one in found:
                stats.latencies += one.stats.latencies
                stats.errors += one.stats.errors
                for status, count in one.stats.statuses.items():
                    stats.statuses[status] = stats.statuses.get(status, 0) + count
            cpu = [one.server_cpu for one in found if one.server_cpu is not None]
            return PhaseResult(
                label,
                sum(one.seconds for one in found),
                stats,
                sum(cpu) / len(cpu) if cpu else None,
                sum(one.client_cpu for one in found) / len(found),
            )

        me_plain, me_org = merged("GET /auth/me (no org)"), merged("GET /auth/me (org claims)")
        rf_plain, rf_org = merged("refresh (no org)"), merged("refresh (org claims)")
        members = merged("GET .../members (10k, pages of 50)")
        org_pages = merged("GET /admin/organizations (pages)")
        me_ratio = me_org.rate / me_plain.rate if me_plain.rate else 0.0
        rf_ratio = rf_org.rate / rf_plain.rate if rf_plain.rate else 0.0
        rows: list[tuple[PhaseResult, str, bool | None]] = [
            (me_plain, "", None),
            (me_org, f"x{me_ratio:.3f} >= {TARGET_RATIO}", me_ratio >= TARGET_RATIO),
            (rf_plain, "", None),
            (rf_org, f"x{rf_ratio:.3f} >= {TARGET_RATIO}", rf_ratio >= TARGET_RATIO),
            (members, f"p99 < {TARGET_P99_MS:.0f} ms", members.p99_ms < TARGET_P99_MS),
            (org_pages, f"p99 < {TARGET_P99_MS:.0f} ms", org_pages.p99_ms < TARGET_P99_MS),
        ]
        args.users = args.members  # the report's header names users
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
