"""The newcomer's path: ``identity serve`` with no configuration at all just works.

In an empty directory and with no ``IDENTITY_*`` variable, the server creates
its SQLite database and a private secret beside it, answers /health, and
stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import aiohttp
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def newcomer_environment() -> dict[str, str]:
    """Nothing of the developer's configuration, only what finds Python and the code."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("IDENTITY_") and name not in {"PYTHONPATH"}
    }
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["IDENTITY_LOG_FORMAT"] = "json"
    return env


def server_output(log: Path) -> str:
    return log.read_text()


async def wait_until_healthy(
    session: aiohttp.ClientSession, url: str, process: asyncio.subprocess.Process, log: Path
) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.returncode is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{server_output(log)}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status == 200:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        # Polling a process we do not control: there is no event to wait on.
        await asyncio.sleep(0.2)
    pytest.fail(f"/health did not answer 200 within {START_TIMEOUT} s:\n{server_output(log)}")


async def test_serve_needs_no_configuration_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            cwd=tmp_path,
            env=newcomer_environment(),
            stdout=sink,
            stderr=sink,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_healthy(session, f"http://127.0.0.1:{port}/health", process, log)
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                health = await response.json()
                server_header = response.headers.get("Server", "")
            # Successful /health polls are logged at debug only: another path for the log.
            async with session.get(
                f"http://127.0.0.1:{port}/.well-known/jwks.json?code=SECRET123",
                headers={"X-Request-ID": "newcomer-1"},
            ) as response:
                assert response.status == 200

        assert health["status"] == "ok"
        assert health["checks"]["email"] == "log"  # no SMTP host: mail goes to the log
        assert "aiohttp" not in server_header.lower()
        database = tmp_path / "identity.db"
        secret = tmp_path / "identity.db.secret"
        assert database.is_file()
        assert secret.is_file()
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(secret.read_text().strip()) >= 32

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    output = server_output(log)
    assert returncode == 0, output
    # The production access log: one JSON line per request, the path without its query.
    entries = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [access] = [e for e in entries if e.get("request_id") == "newcomer-1"]
    assert (access["logger"], access["path"], access["status"]) == (
        "identity.access",
        "/.well-known/jwks.json",
        200,
    )
    assert "SECRET123" not in output
    assert secret.read_text().strip() not in output


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of a process, in clock ticks (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")
async def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path) -> None:
    """Graceful shutdown: a slow request under way when SIGTERM arrives is answered."""
    port = free_port()
    log = tmp_path / "server.log"
    env = newcomer_environment()
    env["IDENTITY_BCRYPT_ROUNDS"] = "15"  # a register that hashes for a second or more
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "identity.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    try:
        async with aiohttp.ClientSession() as session:
            await wait_until_healthy(session, f"http://127.0.0.1:{port}/health", process, log)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = json.dumps({"email": "ada@example.com", "password": "correct horse battery"})
        before = cpu_ticks(process.pid)
        writer.write(
            (
                "POST /auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
            ).encode()
        )
        await writer.drain()
        # The handler is under way once the server burns CPU on the hash (0.2 s of it).
        for _ in range(1000):  # at most 10 s
            if cpu_ticks(process.pid) - before >= 20:
                break
            await asyncio.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        answer = await asyncio.wait_for(reader.read(), STOP_TIMEOUT)
        writer.close()
        returncode = await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert answer.startswith(b"HTTP/1.1 202"), (answer[:200], server_output(log))
    assert returncode == 0, server_output(log)
