"""``GET /health`` of one ``identity serve`` process against a bare aiohttp app.

Both run as one process each, in the same benchmark run, driven by the same
client: a raw asyncio HTTP/1.1 client (keep-alive, one request in flight per
connection, closed loop), light enough that the server, not the client, is the
limit. The identity server runs with its default logging on a fresh Postgres
database; the bare app (``bench/bare_app.py``) answers a constant JSON body.

    PYTHONPATH=. .venv/bin/python bench/health.py --duration 5

Prints req/s of each and the ratio; the target is ≥ 40 % of the bare app.
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
from pathlib import Path

import aiohttp
import uvloop

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
    drop_database,
    free_port,
    open_log,
    run_command,
    tail,
)

TARGET_SHARE = 0.40
REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


class ClosedLoop(asyncio.Protocol):
    """One keep-alive connection: the next request leaves when an answer is complete."""

    def __init__(
        self, counts: dict[int, int], stop: asyncio.Event, request: bytes = REQUEST
    ) -> None:
        self.request = request
        self.counts = counts
        self.stop = stop
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            status = int(head[9:12])
            self.counts[status] = self.counts.get(status, 0) + 1
            self.buffer = self.buffer[end:]
            if self.stop.is_set():
                assert self.transport is not None
                self.transport.close()
                return
            assert self.transport is not None
            self.transport.write(self.request)


async def drive(
    port: int, connections: int, warmup: float, duration: float, request: bytes = REQUEST
) -> tuple[float, dict]:
    """Answers per second inside the measured window, and the statuses seen."""
    loop = asyncio.get_running_loop()
    counts: dict[int, int] = {}
    stop = asyncio.Event()
    transports = []
    for _ in range(connections):
        transport, _protocol = await loop.create_connection(
            lambda: ClosedLoop(counts, stop, request), "127.0.0.1", port
        )
        transports.append(transport)
    await asyncio.sleep(warmup)
    before = sum(counts.values())
    started = time.perf_counter()
    await asyncio.sleep(duration)
    answered = sum(counts.values()) - before
    elapsed = time.perf_counter() - started
    stop.set()
    for transport in transports:
        transport.close()
    return answered / elapsed, dict(counts)


class BareApp:
    def __init__(self, port: int, *extra: str) -> None:
        self.port = port
        self.extra = extra
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, str(REPO / "bench" / "bare_app.py"), str(self.port), *self.extra,
            env=_child_env({}), stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def wait_up(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{self.port}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise BenchError("the bare app did not start")

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{uuid.uuid4().hex[:12]}"
    database_url = _admin_url(args.database_server_url).set(database=name)
    url = database_url.render_as_string(hide_password=False)
    log = open_log(None)
    bare = BareApp(free_port())
    await create_database(args.database_server_url, name)
    server = Server(
        _child_env(
            {
                "IDENTITY_DATABASE_URL": url,
                "IDENTITY_SECRET_KEY": secrets.token_urlsafe(48),
                "IDENTITY_RATE_LIMIT_GLOBAL": "1000000/minute",
            }
        ),
        free_port(),
        log,
    )
    try:
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"],
            _child_env({"IDENTITY_DATABASE_URL": url, "IDENTITY_SECRET_KEY": "x" * 40}),
            "migrate",
        )
        await server.start()
        await bare.start()
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            await bare.wait_up(http)
        results = {}
        for label, port in (("bare aiohttp app", bare.port), ("identity /health", server.port)):
            rate, statuses = await drive(port, args.connections, args.warmup, args.duration)
            results[label] = rate
            print(f"{label:<18} {rate:>9,.0f} req/s   statuses {statuses}")
        share = results["identity /health"] / results["bare aiohttp app"]
        passed = share >= TARGET_SHARE
        print(
            f"identity /health is {share:.1%} of the bare app (target ≥ {TARGET_SHARE:.0%}): "
            f"{'met' if passed else 'MISSED'}"
        )
        return passed
    except BenchError as error:
        print(f"setup failed: {error}\n{tail(log.name)}", file=sys.stderr)
        return False
    finally:
        await server.stop()
        await bare.stop()
        await drop_database(args.database_server_url, name)
        os.unlink(log.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds each")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    args = parser.parse_args()
    return 0 if uvloop.run(bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
