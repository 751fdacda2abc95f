"""Refresh with rotation per second on Postgres, driven by wrk (issue 19's bar).

    PYTHONPATH=. .venv/bin/python bench/refresh_rate.py [--workers 2] [--connections 16]

The Python client of ``bench/load.py`` spends about a quarter of a millisecond of
CPU per request, on the same two cores as the server and Postgres; here the load
comes from wrk (Debian package ``wrk``), a C client that costs a few microseconds.
Each wrk connection owns one session and chains its rotated refresh tokens (a
Lua script reads the new token from each answer), so every request is a real
rotation. ``GET /auth/me`` is measured the same way for reference.

Prints requests per second, wrk's latency percentiles, non-2xx answers, and the
server's CPU per request (all worker processes) and that of the Postgres
backends serving its database (other databases' load does not count). With ``--org``
every session is first switched into one organization, so each refresh recomputes the
org claims. Exit 0, or 2 on a setup error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.load import (  # noqa: E402
    DEFAULT_SERVER_URL,
    HUGE_LIMIT,
    BenchError,
    Client,
    Server,
    _admin_url,
    _child_env,
    create_database,
    create_users,
    drop_database,
    free_port,
    open_log,
    run_command,
    user_email,
    vacuum,
)

# One token per connection: wrk's setup() hands thread i the i-th line, and with
# as many threads as connections each thread drives one connection.
_LUA = r"""
local tokens = {}
local index = 0
for line in io.lines(os.getenv("BENCH_TOKENS")) do tokens[#tokens + 1] = line end
local kind = os.getenv("BENCH_KIND")

function setup(thread)
  index = index + 1
  thread:set("token", tokens[index])
end

function request()
  if kind == "me" then
    return wrk.format("GET", "/auth/me", {["Authorization"] = "Bearer " .. token})
  end
  return wrk.format("POST", "/auth/refresh-token",
    {["Content-Type"] = "application/json"},
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  if kind ~= "me" and status == 200 then
    local next_token = string.match(body, '"refresh_token":%s*"([^"]+)"')
    if next_token then token = next_token end
  end
end
"""


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10, help="seconds per phase")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds first")
    parser.add_argument("--database-server-url", default=DEFAULT_SERVER_URL)
    parser.add_argument(
        "--org",
        action="store_true",
        help="switch every session into one organization first (role 'member', two "
        "permissions): access tokens carry org claims and each refresh recomputes them",
    )
    return parser.parse_args()


async def _join_organization(database_url: str, base: str, access_tokens: list[str]) -> list[str]:
    """Every bench user becomes a member of one organization; each session switches into
    it. Returns the sessions' new access tokens (their refresh tokens stay)."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        org = await connection.fetchval(
            "INSERT INTO organizations (id, tenant_id, slug, name, data, created_at) "
            "SELECT gen_random_uuid(), id, 'bench', 'Bench', '{}', now() FROM tenants "
            "WHERE slug = 'default' RETURNING id"
        )
        await connection.execute(
            "INSERT INTO memberships (id, tenant_id, organization_id, user_id, created_at) "
            "SELECT gen_random_uuid(), tenant_id, $1, id, now() FROM users",
            org,
        )
        await connection.execute(
            "INSERT INTO membership_roles (membership_id, role, tenant_id, organization_id) "
            "SELECT id, 'member', tenant_id, organization_id FROM memberships"
        )
        await connection.execute(
            "INSERT INTO org_roles (tenant_id, name, description, permissions, created_at) "
            "SELECT id, 'member', '', '[\"invoices:read\", \"reports:read\"]', now() "
            "FROM tenants WHERE slug = 'default'"
        )
    finally:
        await connection.close()
    switched = []
    async with aiohttp.ClientSession() as http:
        for access in access_tokens:
            async with http.post(
                f"{base}/auth/organizations/{org}/switch",
                headers={"Authorization": f"Bearer {access}"},
            ) as response:
                if response.status != 200:
                    raise BenchError(f"switch answered {response.status}: {await response.text()}")
                switched.append((await response.json())["access_token"])
    return switched


def _proc_cpu_seconds(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of a process, from /proc; (0, 0.0) once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0, 0.0
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_cpu_seconds(pid: int) -> float:
    """CPU seconds of the server process and its children (the workers)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return sum(
        cpu for p in pids for parent, cpu in [_proc_cpu_seconds(p)] if p == pid or parent == pid
    )


async def _backends(database_url: str) -> list[int]:
    """The Postgres backends serving this database: others' load does not count."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def _wrk(
    base: str, kind: str, tokens: list[str], seconds: int, script: str
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(tokens) + "\n")
    env = {**os.environ, "BENCH_TOKENS": listing.name, "BENCH_KIND": kind}
    try:
        output = await run_command(
            [
                "wrk",
                "--latency",
                "-t",
                str(len(tokens)),
                "-c",
                str(len(tokens)),
                "-d",
                f"{seconds}s",
                "-s",
                script,
                base,
            ],
            env,
            f"wrk ({kind})",
        )
    finally:
        os.unlink(listing.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", output)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or p99 is None:
        raise BenchError(f"could not read wrk's output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    return {
        "rate": float(rate.group(1)),
        "p99_ms": float(p99.group(1)) * scale,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
    }


async def bench(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    name = f"identity_bench_{secrets.token_hex(6)}"
    database_url = (
        _admin_url(args.database_server_url)
        .set(database=name)
        .render_as_string(hide_password=False)
    )
    port = free_port()
    env = _child_env(
        {
            "IDENTITY_DATABASE_URL": database_url,
            "IDENTITY_SECRET_KEY": secrets.token_urlsafe(36),
            "IDENTITY_LOG_LEVEL": "warning",
            "IDENTITY_BCRYPT_ROUNDS": "4",
            "IDENTITY_RATE_LIMIT_GLOBAL": HUGE_LIMIT,
            "IDENTITY_RATE_LIMIT_LOGIN": HUGE_LIMIT,
        }
    )
    log = open_log(None)
    server = Server(env, port, log)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(_LUA)
    await create_database(args.database_server_url, name)
    try:
        await run_command(
            [sys.executable, "-m", "identity.entrypoints.cli", "migrate"], env, "migrate"
        )
        await create_users(database_url, args.connections, 4, 1)
        server.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "identity.entrypoints.cli", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(args.workers),
            env=env, cwd=str(REPO), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:
            await server.wait_healthy(http)
            client = Client(http, server.base)
            deadline = asyncio.get_running_loop().time() + 60
            sessions = [
                await client.tokens_for(user_email(i), deadline) for i in range(args.connections)
            ]
        if args.org:
            accesses = await _join_organization(
                database_url, server.base, [s.access for s in sessions]
            )
            for session, access in zip(sessions, accesses, strict=True):
                session.access = access
        await vacuum(database_url)
        print(
            f"server: {args.workers} worker(s); org claims: {'yes' if args.org else 'no'}; "
            f"wrk: {args.connections} connections, "
            f"{args.duration} s per phase; load before: {os.getloadavg()[0]:.2f}"
        )
        results = {}
        for kind, tokens in (
            ("me", [s.access for s in sessions]),
            ("refresh", [s.refresh for s in sessions]),
        ):
            if kind == "refresh":
                # Warm-up rotations are real: carry on from the tokens they leave.
                tokens = await _chain_warmup(server.base, tokens, args.warmup, lua.name)
            else:
                await _wrk(server.base, kind, tokens, args.warmup, lua.name)
            assert server.process is not None
            backends = await _backends(database_url)
            server_before = _server_cpu_seconds(server.process.pid)
            postgres_before = sum(_proc_cpu_seconds(pid)[1] for pid in backends)
            measured = await _wrk(server.base, kind, tokens, args.duration, lua.name)
            server_cpu = _server_cpu_seconds(server.process.pid) - server_before
            postgres_cpu = sum(_proc_cpu_seconds(pid)[1] for pid in backends) - postgres_before
            count = max(1.0, measured["rate"] * args.duration)
            measured["cpu_us"] = 1e6 * server_cpu / count
            measured["postgres_cpu_us"] = 1e6 * postgres_cpu / count
            results[kind] = measured
        for kind, label in (("me", "GET /auth/me"), ("refresh", "POST /auth/refresh-token")):
            m = results[kind]
            print(
                f"{label:26} {m['rate']:8.0f} req/s   p99 {m['p99_ms']:6.1f} ms   "
                f"non-2xx {m['non_2xx']:.0f}   CPU µs/req: server {m['cpu_us']:5.0f}, "
                f"Postgres {m['postgres_cpu_us']:4.0f}"
            )
        print(json.dumps({"workers": args.workers, **{k: v for k, v in results.items()}}))
    finally:
        await server.stop()
        log.close()
        os.unlink(lua.name)
        await drop_database(args.database_server_url, name)


async def _chain_warmup(base: str, tokens: list[str], seconds: int, script: str) -> list[str]:
    """Rotate for ``seconds`` with the Python client, one chain per token; the last
    tokens are where wrk starts (wrk cannot hand its tokens back)."""
    async with aiohttp.ClientSession() as http:
        client = Client(http, base)
        loop = asyncio.get_running_loop()
        ends = loop.time() + seconds

        async def chain(token: str) -> str:
            while loop.time() < ends:
                status, rotated = await client.refresh(token)
                if status != 200 or rotated is None:
                    raise BenchError(f"refresh answered {status} during the warm-up")
                token = rotated
            return token

        return list(await asyncio.gather(*(chain(t) for t in tokens)))


def main() -> int:
    args = _parse()
    try:
        asyncio.run(bench(args))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
