"""The HTTP edge's own cost: identity against a bare aiohttp + uvloop app, side by side.

Both servers run as one process each in the same run, driven by the same raw
keep-alive client (``bench/health.py``'s closed loop), on one fresh Postgres
database:

- ``GET /health``: identity's against the bare app's constant body;
- ``GET /auth/me``: identity's against the bare app doing the same one asyncpg
  read of the session joined to its account (``bench/bare_app.py``).

The rounds alternate (bare, identity, bare, identity, ...) so drift of a busy
machine falls on both. Prints req/s of each and the ratios; targets: identity's
``/auth/me`` at ≥ 60 % of the bare app's, ``/health`` at ≥ 40 %.

    PYTHONPATH=. .venv/bin/python bench/edge.py --duration 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import uuid
from pathlib import Path

import aiohttp
import uvloop

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.health import BareApp, drive  # noqa: E402
from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    BenchError,
    Client,
    Server,
    _admin_url,
    _child_env,
    _process_cpu_seconds,
    create_database,
    create_users,
    drop_database,
    free_port,
    open_log,
    run_command,
    tail,
    user_email,
)

TARGETS = {"/auth/me": 0.60, "/health": 0.40}


def _request(path: str, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n".encode()


async def bench(args: argparse.Namespace) -> bool:
    name = f"identity_bench_{uuid.uuid4().hex[:12]}"
    url = (
        _admin_url(args.database_server_url)
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    log = open_log(None)
    bare = BareApp(free_port(), url)
    await create_database(args.database_server_url, name)
    server = Server(
        _child_env(
            {
                "IDENTITY_DATABASE_URL": url,
                "IDENTITY_SECRET_KEY": secrets.token_urlsafe(48),
                "IDENTITY_RATE_LIMIT_GLOBAL": "100000000/minute",
                "IDENTITY_RATE_LIMIT_LOGIN": "1000000/minute",
                "IDENTITY_BCRYPT_ROUNDS": "4",
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
        await create_users(url, 1, 4, 1)
        await server.start()
        await bare.start()
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            await bare.wait_up(http)
            tokens = await Client(http, server.base).tokens_for(user_email(0), 1e18)
        rates: dict[tuple[str, str], list[float]] = {}
        cpu: dict[tuple[str, str], list[float]] = {}
        assert bare.process is not None and server.process is not None
        pids = {"bare": bare.process.pid, "identity": server.process.pid}
        for _ in range(args.rounds):
            for path in ("/auth/me", "/health"):
                for label, port in (("bare", bare.port), ("identity", server.port)):
                    before = _process_cpu_seconds(pids[label]) or 0.0
                    rate, statuses = await drive(
                        port, args.connections, args.warmup, args.duration,
                        _request(path, tokens.access if path == "/auth/me" else None),
                    )  # fmt: skip
                    spent = (_process_cpu_seconds(pids[label]) or 0.0) - before
                    if set(statuses) != {200}:
                        raise BenchError(f"{label} {path} answered {statuses}")
                    rates.setdefault((path, label), []).append(rate)
                    # Server CPU per answer, warm-up included in both terms.
                    cpu.setdefault((path, label), []).append(spent / sum(statuses.values()))
        passed = True
        for path, target in TARGETS.items():
            bare_rate = statistics.median(rates[(path, "bare")])
            ours = statistics.median(rates[(path, "identity")])
            share = ours / bare_rate
            met = share >= target
            passed = passed and met
            bare_cpu = statistics.median(cpu[(path, "bare")]) * 1e6
            our_cpu = statistics.median(cpu[(path, "identity")]) * 1e6
            print(
                f"{path:<9} bare {bare_rate:>8,.0f} req/s  identity {ours:>8,.0f} req/s  "
                f"= {share:.1%} (target ≥ {target:.0%}: {'met' if met else 'MISSED'})  "
                f"server CPU per request: bare {bare_cpu:.0f} µs, identity {our_cpu:.0f} µs "
                f"({bare_cpu / our_cpu:.1%})"
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    args = parser.parse_args()
    return 0 if uvloop.run(bench(args)) else 1


if __name__ == "__main__":
    sys.exit(main())
