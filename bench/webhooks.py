"""Webhook benchmarks: the cost of events and a subscribed webhook on the hot paths, and
the delivery queue's throughput from one process.

    PYTHONPATH=. .venv/bin/python bench/webhooks.py [--rounds 12] [--duration 5]

Part 1 runs one real ``identity serve`` on a fresh Postgres database (as
``bench/load.py`` does) and measures refreshes and logins per second twice:
first with no webhook (every login still records its event), then with one
webhook subscribed to every event type, delivered by the server's own worker
to a local receiver process. Target: the second within 5 % of the first.
(Events themselves are always on; compare with ``bench/load.py`` run on a
build before them for that baseline.)

Part 2 queues ``--events`` events for one webhook and delivers them with the
real ``DeliverWebhooks`` over the real SQL queue and HTTP sender, in this one
process, to a receiver in another process. Target: at least 500 webhooks/s.

Exit status 0 when both targets are met, 1 when one is missed, 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
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
    PhaseResult,
    Server,
    Tokens,
    _admin_url,
    _child_env,
    create_database,
    create_users,
    drop_database,
    free_port,
    login_worker,
    open_log,
    refresh_worker,
    run_command,
    run_phase,
    user_email,
    vacuum,
)
from identity.adapters.sealing import Sealers  # noqa: E402
from identity.adapters.sqlalchemy.engine import make_engine  # noqa: E402
from identity.adapters.sqlalchemy.uow import SqlUnitOfWork  # noqa: E402
from identity.adapters.webhook_http import AiohttpWebhookSender, PublicTargetGuard  # noqa: E402
from identity.application.webhooks import DeliverWebhooks, new_secret  # noqa: E402
from identity.domain.events import EventType, SecurityEvent  # noqa: E402
from identity.domain.webhooks import DeliveryStatus, Webhook  # noqa: E402

TARGET_OVERHEAD = 0.05
TARGET_DELIVERIES_PER_SECOND = 500.0

# A receiver that answers 204 at once: its own process, so it does not share the
# delivering process's event loop.
RECEIVER = """
import sys
from aiohttp import web
count = 0
async def hook(request):
    global count
    await request.read()
    count += 1
    return web.Response(status=204)
async def seen(request):
    return web.Response(text=str(count))
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", seen)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", RECEIVER, str(self.port), start_new_session=True
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"http://127.0.0.1:{self.port}/count") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise BenchError("the receiver did not start")

    async def count(self, http: aiohttp.ClientSession) -> int:
        async with http.get(f"http://127.0.0.1:{self.port}/count") as response:
            return int(await response.text())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=6, help="rounds of part 1 (each: both sides)")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    return parser.parse_args()


async def hot_paths(
    args: argparse.Namespace, server: Server, client: Client, sessions: list[Tokens]
) -> tuple[PhaseResult, PhaseResult]:
    """One refresh phase and one login phase; ``sessions`` carry over between calls."""
    await vacuum(args.database_url)
    emails = [user_email(i) for i in range(args.users)]

    refresh, _ = await run_phase(
        "refresh",
        server,
        args.warmup,
        args.duration,
        [
            refresh_worker(client, emails[i % len(emails)], tokens)
            for i, tokens in enumerate(sessions)
        ],
    )
    login, _ = await run_phase(
        "login",
        server,
        args.warmup,
        args.duration,
        [login_worker(client, emails, i, args.concurrency) for i in range(args.concurrency)],
    )
    return refresh, login


async def part_one(
    args: argparse.Namespace, database_url: str, secret_key: str, receiver: Receiver
) -> bool:
    args.database_url = database_url
    port = free_port()
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secret_key,
            "IDENTITY_PORT": str(port),
            "IDENTITY_LOG_LEVEL": "warning",
            "IDENTITY_BCRYPT_ROUNDS": str(args.rounds),
            "IDENTITY_HASHER_THREADS": str(args.threads),
            "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
            "IDENTITY_WEBHOOK_ALLOW_PRIVATE": "true",
        }
    )
    await create_users(database_url, args.users, args.rounds, args.threads)
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
            "webhooks:manage",
        ],
        env,
        "apikeys create",
    )
    key = output.strip().splitlines()[-1].strip()
    log = open_log(None)
    server = Server(env, port, log)
    connector = aiohttp.TCPConnector(limit=args.concurrency + 8)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    try:
        await server.start()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            await server.wait_healthy(http)
            client = Client(http, server.base)
            emails = [user_email(i) for i in range(args.users)]
            deadline = time.perf_counter() + 120.0
            sessions = list(
                await asyncio.gather(
                    *(
                        client.tokens_for(emails[i % len(emails)], deadline)
                        for i in range(args.concurrency)
                    )
                )
            )
            admin = {"Authorization": f"Bearer {key}"}
            plain: list[tuple[PhaseResult, PhaseResult]] = []
            hooked: list[tuple[PhaseResult, PhaseResult]] = []
            delivered = 0
            # Counterbalanced (without, with, with, without, ...): the database grows
            # and the machine drifts during a run, and a fixed order would charge
            # that drift to whichever side always comes second.
            # One unrecorded round first: the first phase after start-up runs on cold
            # caches and would weigh on whichever side came first.
            print("part 1: warm-up round ...", flush=True)
            await hot_paths(args, server, client, sessions)
            for turn in range(1, args.repeat + 1):
                order = ("plain", "hooked") if turn % 2 else ("hooked", "plain")
                for side in order:
                    if side == "plain":
                        print(f"part 1, round {turn}: no webhook ...", flush=True)
                        plain.append(await hot_paths(args, server, client, sessions))
                        continue
                    async with http.post(
                        f"{server.base}/admin/webhooks",
                        json={"url": receiver.url, "events": [kind.value for kind in EventType]},
                        headers=admin,
                    ) as response:
                        if response.status != 201:
                            raise BenchError(
                                f"could not create the webhook: {await response.text()}"
                            )
                        hook_id = (await response.json())["id"]
                    before = await receiver.count(http)
                    print(f"part 1, round {turn}: one webhook on every event ...", flush=True)
                    hooked.append(await hot_paths(args, server, client, sessions))
                    delivered += await receiver.count(http) - before
                    async with http.delete(
                        f"{server.base}/admin/webhooks/{hook_id}", headers=admin
                    ) as response:
                        await response.read()
    finally:
        await server.stop()
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(log.name)
    print()
    print("| phase | no webhook /s (each round) | one webhook /s (each round) | change of means |")
    print("|---|---|---|---|")
    passed = True
    for index, name in enumerate(("refresh", "login")):
        without = [pair[index].rate for pair in plain]
        with_hook = [pair[index].rate for pair in hooked]
        base, other = sum(without) / len(without), sum(with_hook) / len(with_hook)
        change = other / base - 1 if base else float("nan")
        passed &= change >= -TARGET_OVERHEAD
        print(
            f"| {name} | {' / '.join(f'{r:,.1f}' for r in without)} "
            f"| {' / '.join(f'{r:,.1f}' for r in with_hook)} | {change:+.1%} |"
        )
    print(f"webhooks delivered meanwhile: {delivered}")
    print(f"target: within {TARGET_OVERHEAD:.0%}: {'PASS' if passed else 'FAIL'}")
    return passed


async def part_two(
    args: argparse.Namespace, database_url: str, secret_key: str, receiver: Receiver
) -> bool:
    engine = make_engine(database_url, pool_size=10)
    sealer = Sealers.derive(secret_key)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(engine, sealer)

    class Clock:
        def now(self) -> datetime:
            return datetime.now(UTC)

    sender = AiohttpWebhookSender(PublicTargetGuard(allow_private=True), timeout_seconds=10)
    try:
        async with uow() as work:
            tenant = await work.tenants.get_by_slug("default")
            assert tenant is not None
            for earlier in await work.webhooks.list_for_tenant(tenant.id):
                await work.webhooks.delete(tenant.id, earlier.id)
            hook = Webhook(
                uuid.uuid4(),
                tenant.id,
                receiver.url,
                frozenset({EventType.LOGIN_FAILED}),
                new_secret(),
                Clock().now(),
            )
            await work.webhooks.add(hook)
            await work.commit()
        print(f"part 2: queueing {args.events} events ...", flush=True)
        for start in range(0, args.events, 500):
            async with uow() as work:
                for _ in range(min(500, args.events - start)):
                    await work.events.add(
                        SecurityEvent.new(
                            EventType.LOGIN_FAILED, tenant.id, Clock().now(), reason="bench"
                        )
                    )
                await work.commit()
        deliver = DeliverWebhooks(uow, sender, Clock())
        print("part 2: delivering ...", flush=True)
        started = time.perf_counter()
        attempts = 0
        while True:
            handled = await deliver()
            if handled == 0:
                break
            attempts += handled
        elapsed = time.perf_counter() - started
        async with uow() as work:
            left = await work.webhook_deliveries.pending_count()
            settled = await work.webhook_deliveries.list_for_webhook(hook.id, limit=args.events + 1)
        done = sum(1 for item in settled if item.status is DeliveryStatus.DELIVERED)
    finally:
        await sender.close()
        await engine.dispose()
    rate = done / elapsed if elapsed else float("nan")
    passed = rate >= TARGET_DELIVERIES_PER_SECOND and left == 0
    print()
    print(
        f"delivered {done} webhooks ({attempts} attempts) in {elapsed:.2f}s "
        f"from one process: {rate:,.0f}/s"
    )
    print(f"left pending: {left}")
    print(f"target: >= {TARGET_DELIVERIES_PER_SECOND:,.0f}/s: {'PASS' if passed else 'FAIL'}")
    return passed


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{secrets.token_hex(6)}"
    database_url = _admin_url(args.database_server_url).set(database=name).render_as_string(False)
    receiver = Receiver()
    created = False
    try:
        await create_database(args.database_server_url, name)
        created = True
        secret_key = secrets.token_urlsafe(36)
        env = _child_env({"IDENTITY_DATABASE_URL": database_url})
        env["IDENTITY_SECRET_KEY"] = secret_key
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        async with aiohttp.ClientSession() as http:
            await receiver.start(http)
        one = await part_one(args, database_url, secret_key, receiver)
        two = await part_two(args, database_url, secret_key, receiver)
        return one and two
    finally:
        await receiver.stop()
        if created:
            try:
                await drop_database(args.database_server_url, name)
            except Exception as error:
                print(f"warning: could not drop database {name}: {error}", file=sys.stderr)


def main() -> int:
    args = _parse()
    try:
        return 0 if asyncio.run(bench(args)) else 1
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
