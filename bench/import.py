"""Import and export of many users on Postgres (API.md §18 scale bar).

1. creates ``identity_bench_<random>`` on ``--database-server-url`` and migrates it;
2. writes an ``identity`` NDJSON file of ``--users`` users (default 1,000,000), all
   carrying one of a handful of bcrypt hashes made once at cost 4 (the cost does
   not change the import, which never runs bcrypt);
3. starts one ``identity serve`` and measures sign-in latency (sequential logins of
   a few probe users) for ``--probe-seconds`` while nothing else runs;
4. runs ``identity users import`` as a child process (wall time; peak RSS and CPU
   time from ``wait4``) while the same sign-in probe runs, then the quiet probe
   again, and compares the p99 during the import with that of both quiet windows;
5. runs ``identity users export --with-secrets`` (wall time);
6. stops the server and drops the database.

Targets: import < 60 s and export < 30 s for 1,000,000 users, importer peak RSS
< 300 MB, sign-in p99 during the import <= 2x the p99 without.

    PYTHONPATH=. .venv/bin/python bench/import.py --users 100000
"""

# ruff: noqa: ASYNC221, ASYNC240
# A benchmark driver: its blocking file and process calls are part of what it times.
from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import bcrypt

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    HUGE_LIMIT,
    PASSWORD,
    BenchError,
    Server,
    _child_env,
    create_database,
    drop_database,
    free_port,
    percentile,
    run_command,
)

TARGET_IMPORT_S = 60.0
TARGET_EXPORT_S = 30.0
TARGET_RSS_MB = 300.0
TARGET_P99_RATIO = 2.0
PROBE_USERS = 4


def write_file(path: Path, users: int) -> float:
    started = time.perf_counter()
    hashes = [bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode() for _ in range(8)]
    with path.open("w", encoding="utf-8", buffering=4 * 1024 * 1024) as out:
        template = (
            '{"email":"user%d@bench.example.com","email_verified":true,"full_name":"User %d",'
            '"created_at":"2024-01-01T00:00:00+00:00","password_hash":"%s"}\n'
        )
        for index in range(users):
            out.write(template % (index, index, hashes[index & 7]))
    return time.perf_counter() - started


async def probe(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    """Sequential logins of the probe users until ``stop``."""
    async with aiohttp.ClientSession() as http:
        index = 0
        while not stop.is_set():
            email = f"probe{index % PROBE_USERS}@bench.example.com"
            index += 1
            started = time.perf_counter()
            async with http.post(
                f"{base}/auth/login", json={"email": email, "password": PASSWORD}
            ) as response:
                await response.read()
                if response.status != 200:
                    raise BenchError(f"probe login answered {response.status}")
            latencies.append(time.perf_counter() - started)


async def quiet_window(base: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    stop = asyncio.Event()
    task = asyncio.create_task(probe(base, stop, latencies))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return latencies


async def timed_child(args: list[str], env: dict[str, str]) -> tuple[float, float, str, float]:
    """Wall seconds, peak RSS (MB), output and CPU seconds (user + system) of one child."""
    started = time.perf_counter()
    pid = os.posix_spawn(
        sys.executable,
        [sys.executable, "-m", "identity.entrypoints.cli", *args],
        env,
        file_actions=[
            (
                os.POSIX_SPAWN_OPEN,
                1,
                str(env["BENCH_OUT"]),
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                0o600,
            ),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
    )
    loop = asyncio.get_running_loop()
    _, status, usage = await loop.run_in_executor(None, os.wait4, pid, 0)
    elapsed = time.perf_counter() - started
    output = Path(env["BENCH_OUT"]).read_text(errors="replace")
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise BenchError(f"{args[:3]} failed:\n{output[-2000:]}")
    return elapsed, usage.ru_maxrss / 1024, output, usage.ru_utime + usage.ru_stime


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--probe-seconds", type=float, default=10.0)
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument("--keep-file", action="store_true")
    parser.add_argument("--nice", type=int, default=10, help="the importer's niceness")
    args = parser.parse_args(argv)

    name = f"identity_bench_{secrets.token_hex(4)}"
    base_url = args.database_server_url.rsplit("/", 1)[0]
    database_url = f"{base_url}/{name}"
    workdir = Path(tempfile.mkdtemp(prefix="identity-import-bench-"))
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),
            "IDENTITY_LOG_LEVEL": "warning",
            "IDENTITY_BCRYPT_ROUNDS": "4",
            "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
            "BENCH_OUT": str(workdir / "child.log"),
        }
    )
    await create_database(args.database_server_url, name)
    server: Server | None = None
    try:
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        data = workdir / "users.ndjson"
        made = write_file(data, args.users)
        print(f"file: {args.users} users, {data.stat().st_size / 1e6:.0f} MB in {made:.1f}s")
        probes = workdir / "probes.ndjson"
        probe_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
        probes.write_text(
            "".join(
                json.dumps(
                    {
                        "email": f"probe{i}@bench.example.com",
                        "email_verified": True,
                        "password_hash": probe_hash,
                    }
                )
                + "\n"
                for i in range(PROBE_USERS)
            )
        )
        await timed_child(
            [
                "users",
                "import",
                str(probes),
                "--format",
                "identity",
                "--report",
                str(workdir / "p.jsonl"),
            ],
            env,
        )

        port = free_port()
        log = (workdir / "server.log").open("w")
        server = Server({**env, "IDENTITY_PORT": str(port)}, port, log)
        await server.start()
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)

        quiet = await quiet_window(server.base, args.probe_seconds)

        busy: list[float] = []
        stop = asyncio.Event()
        task = asyncio.create_task(probe(server.base, stop, busy))
        load_before = os.getloadavg()[0]
        import_s, rss_mb, output, import_cpu = await timed_child(
            [
                "users",
                "import",
                str(data),
                "--format",
                "identity",
                "--report",
                str(workdir / "r.jsonl"),
                "--nice",
                str(args.nice),
            ],
            env,
        )
        stop.set()
        await task
        # Quiet again, now with every user stored: the machine's load drifts (others
        # share it), so the reference is both quiet windows together.
        quiet_after = await quiet_window(server.base, args.probe_seconds)
        summary = json.loads(output[output.index("{") :])
        export_s, export_rss, _, export_cpu = await timed_child(
            ["users", "export", str(workdir / "out.ndjson"), "--with-secrets"], env
        )
        before_p99 = percentile(quiet, 0.99) * 1000
        after_p99 = percentile(quiet_after, 0.99) * 1000
        quiet_p99 = percentile(quiet + quiet_after, 0.99) * 1000
        busy_p99 = percentile(busy, 0.99) * 1000
        ratio = busy_p99 / quiet_p99 if quiet_p99 else float("inf")
        scale = 1_000_000 / args.users
        rate = args.users / import_s
        print(
            f"import: {summary['imported']} imported, {summary['failed']} failed in "
            f"{import_s:.1f}s ({rate:,.0f}/s; 1M at this rate: {import_s * scale:.0f}s, "
            f"target < {TARGET_IMPORT_S:.0f}s)"
        )
        print(
            f"importer: peak RSS {rss_mb:.0f} MB (target < {TARGET_RSS_MB:.0f} MB), "
            f"CPU {import_cpu:.1f}s ({import_cpu / args.users * 1e6:.1f} µs a user)"
        )
        print(
            f"export: {export_s:.1f}s (1M at this rate: {export_s * scale:.0f}s, "
            f"target < {TARGET_EXPORT_S:.0f}s), peak RSS {export_rss:.0f} MB, "
            f"CPU {export_cpu:.1f}s"
        )
        print(
            f"sign-in p99: {quiet_p99:.1f} ms quiet ({before_p99:.1f} before the import, "
            f"{after_p99:.1f} after; {len(quiet) + len(quiet_after)} logins), "
            f"{busy_p99:.1f} ms during the import ({len(busy)} logins): {ratio:.2f}x "
            f"(target <= {TARGET_P99_RATIO:.0f}x)"
        )
        print(
            f"load average (1 min) before the import {load_before:.2f}, "
            f"after the export {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
        )
        ok = (
            import_s * scale < TARGET_IMPORT_S
            and export_s * scale < TARGET_EXPORT_S
            and rss_mb < TARGET_RSS_MB
            and ratio <= TARGET_P99_RATIO
        )
        return 0 if ok else 1
    finally:
        if server is not None:
            await server.stop()
        await drop_database(args.database_server_url, name)
        if not args.keep_file:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
