"""Before and after: the hot paths of this checkout against another commit, on one machine.

    PYTHONPATH=. .venv/bin/python bench/compare.py --ref d588668 [--slices 6] [--duration 4]

Checks ``--ref`` out into a temporary git worktree, gives each version its own
fresh Postgres database and its own ``identity serve`` process (the other
version's code through ``PYTHONPATH``), logs ``--concurrency`` sessions into
each, then measures ``GET /auth/me`` and ``POST /auth/refresh-token`` in short
slices that alternate between the two servers in a counterbalanced order (A B
B A A B ...), so a machine that drifts during the run weighs on both alike.
The idle server waits meanwhile. Prints each slice's req/s and the change of
the means; the ±5 % budget for a new feature is read off that last column.

The login path is bcrypt-bound: ``bench/load.py`` compares it with the hasher.
Exit status 0, or 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    HUGE_LIMIT,
    REQUEST_TIMEOUT_SECONDS,
    BenchError,
    Client,
    Server,
    Tokens,
    _admin_url,
    create_database,
    create_users,
    drop_database,
    free_port,
    me_worker,
    open_log,
    refresh_worker,
    run_command,
    run_phase,
    user_email,
    vacuum,
)


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (A)")
    parser.add_argument("--slices", type=int, default=6, help="measured slices per side")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per slice")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    return parser.parse_args()


class Side:
    """One version: its source tree, database and server."""

    def __init__(self, label: str, tree: Path, server_url: str) -> None:
        self.label = label
        self.tree = tree
        self.database = f"identity_bench_{secrets.token_hex(6)}"
        self.database_url = (
            _admin_url(server_url).set(database=self.database).render_as_string(False)
        )
        self.port = free_port()
        self.log = open_log(None)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        env.update(
            {
                "PYTHONPATH": str(tree),
                "IDENTITY_DATABASE_URL": self.database_url,
                "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),
                "IDENTITY_PORT": str(self.port),
                "IDENTITY_LOG_LEVEL": "warning",
                "IDENTITY_BCRYPT_ROUNDS": "4",
                "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
                "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
            }
        )
        self.env = env
        self.server = Server(env, self.port, self.log, cwd=tree)
        self.sessions: list[Tokens] = []
        self.me: list[float] = []
        self.refresh: list[float] = []
        # Server CPU milliseconds per request: what this process spends, apart
        # from Postgres and the load generator sharing the machine.
        self.me_cpu: list[float] = []
        self.refresh_cpu: list[float] = []

    async def prepare(self, server_url: str, args: argparse.Namespace) -> None:
        await create_database(server_url, self.database)
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"],
            self.env,
            "migrate",
            cwd=self.tree,
        )
        await create_users(self.database_url, args.users, 4, 1)


async def _slice(side: Side, http: aiohttp.ClientSession, args: argparse.Namespace) -> None:
    client = Client(http, side.server.base)
    emails = [user_email(i) for i in range(args.users)]

    await vacuum(side.database_url)
    me, _ = await run_phase(
        "me", side.server, args.warmup, args.duration, [me_worker(client, t) for t in side.sessions]
    )
    refresh, _ = await run_phase(
        "refresh",
        side.server,
        args.warmup,
        args.duration,
        [refresh_worker(client, emails[i % len(emails)], t) for i, t in enumerate(side.sessions)],
    )
    side.me.append(me.rate)
    side.refresh.append(refresh.rate)
    side.me_cpu.append(1000 * (me.server_cpu or 0.0) / me.rate)
    side.refresh_cpu.append(1000 * (refresh.server_cpu or 0.0) / refresh.rate)
    print(
        f"  {side.label}: /auth/me {me.rate:,.1f}/s ({side.me_cpu[-1]:.3f} ms cpu), "
        f"refresh {refresh.rate:,.1f}/s ({side.refresh_cpu[-1]:.3f} ms cpu)",
        flush=True,
    )


def _row(name: str, before: list[float], after: list[float], digits: int = 1) -> str:
    a, b = sum(before) / len(before), sum(after) / len(after)
    low = 0 if digits == 1 else digits
    return (
        f"| {name} | {a:,.{digits}f} ({min(before):,.{low}f}-{max(before):,.{low}f}) "
        f"| {b:,.{digits}f} ({min(after):,.{low}f}-{max(after):,.{low}f}) | {b / a - 1:+.1%} |"
    )


async def compare(args: argparse.Namespace) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="identity-compare-"))
    tree = scratch / "tree"
    await run_command(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.ref],
        dict(os.environ),
        "git worktree add",
    )
    # The same bench helpers on both sides (create_users writes plain SQL).
    sides = [
        Side(f"A {args.ref}", tree, args.database_server_url),
        Side("B this checkout", REPO, args.database_server_url),
    ]
    created: list[Side] = []
    try:
        for side in sides:
            created.append(side)
            await side.prepare(args.database_server_url, args)
            await side.server.start()
        connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            for side in sides:
                await side.server.wait_healthy(http)
                client = Client(http, side.server.base)
                deadline = time.perf_counter() + 120.0
                side.sessions = list(
                    await asyncio.gather(
                        *(
                            client.tokens_for(user_email(i % args.users), deadline)
                            for i in range(args.concurrency)
                        )
                    )
                )
            print("warm-up (not counted) ...", flush=True)
            for side in sides:
                await _slice(side, http, args)
                for values in (side.me, side.refresh, side.me_cpu, side.refresh_cpu):
                    values.clear()
            for turn in range(args.slices):
                print(f"slice {turn + 1} of {args.slices}", flush=True)
                order = sides if turn % 2 == 0 else sides[::-1]
                for side in order:
                    await _slice(side, http, args)
    finally:
        for side in created:
            await side.server.stop()
            side.log.close()
            with contextlib.suppress(OSError):
                os.unlink(side.log.name)
            with contextlib.suppress(Exception):
                await drop_database(args.database_server_url, side.database)
        with contextlib.suppress(BenchError):
            await run_command(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                dict(os.environ),
                "git worktree remove",
            )
        shutil.rmtree(scratch, ignore_errors=True)
    a, b = sides
    print()
    print(f"| path | A {args.ref} req/s (range) | B this checkout req/s (range) | change |")
    print("|---|---|---|---|")
    print(_row("GET /auth/me", a.me, b.me))
    print(_row("POST /auth/refresh-token", a.refresh, b.refresh))
    print(_row("server CPU ms per /auth/me", a.me_cpu, b.me_cpu, digits=3))
    print(_row("server CPU ms per refresh", a.refresh_cpu, b.refresh_cpu, digits=3))


def main() -> int:
    args = _parse()
    try:
        asyncio.run(compare(args))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
