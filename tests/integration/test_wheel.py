"""The built wheel on its own: installed into a fresh venv, run from an empty directory.

Nothing of the source tree is on the path: the venv gets the wheel and its
dependencies from pip (a warm cache keeps this to some seconds), and every
command runs with an empty working directory.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# One pytest-xdist worker runs them all: the wheel and its venv are built once per worker.
pytestmark = pytest.mark.xdist_group("wheel")
START_TIMEOUT = 30.0


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding only the built wheel and its dependencies; its bin dir."""
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("identity-*.whl"))
    assert len(wheels) == 1, wheels
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # This venv's pip installs into the new one: saves bootstrapping pip there.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "-q",
            str(wheels[0]),
        ],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def clean_env(**identity: str) -> dict[str, str]:
    """No PYTHONPATH or IDENTITY_* leaking in from the test run."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("IDENTITY_") and name not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env.update({f"IDENTITY_{name}": value for name, value in identity.items()})
    return env


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    return path


@pytest.fixture
def serving(empty_dir: Path) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def health_when_up(process: subprocess.Popen[str], port: int) -> tuple[int, dict[str, object]]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return answer.status, json.loads(answer.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)  # polling for a port to open, with a deadline
    raise AssertionError("the server did not answer /health in time")


def test_the_wheel_does_not_depend_on_the_source_tree(wheel_venv: Path, empty_dir: Path) -> None:
    python = str(wheel_venv / "python")
    found = run(
        [
            python,
            "-c",
            "import identity, identity.migrations as m; print(identity.__file__);"
            "print(list(m.__path__)[0])",
        ],
        empty_dir,
        clean_env(),
    )
    assert found.returncode == 0, found.stderr
    for line in found.stdout.split():
        assert str(ROOT) not in line
        assert "site-packages" in line


@pytest.mark.parametrize("command", [["identity"], ["python", "-m", "identity"]])
def test_migrate_then_serve_on_sqlite_from_an_empty_directory(
    wheel_venv: Path,
    empty_dir: Path,
    serving: list[subprocess.Popen[str]],
    command: list[str],
) -> None:
    program = [str(wheel_venv / command[0]), *command[1:]]
    env = clean_env(LOG_FORMAT="text")

    migrated = run([*program, "migrate"], empty_dir, env)

    assert migrated.returncode == 0, migrated.stderr
    assert "migrations applied" in migrated.stdout
    assert (empty_dir / "identity.db").exists()
    port = free_port()
    process = subprocess.Popen(
        [*program, "serve", "--port", str(port)],
        cwd=empty_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    serving.append(process)
    status, body = health_when_up(process, port)
    assert status == 200
    assert body["status"] == "ok"


def test_migrate_then_serve_on_postgres(
    wheel_venv: Path,
    empty_dir: Path,
    serving: list[subprocess.Popen[str]],
    fresh_postgres_url: str,
) -> None:
    env = clean_env(DATABASE_URL=fresh_postgres_url, SECRET_KEY=secrets.token_urlsafe(32))
    identity = str(wheel_venv / "identity")

    migrated = run([identity, "migrate"], empty_dir, env)

    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    process = subprocess.Popen(
        [identity, "serve", "--port", str(port)],
        cwd=empty_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    serving.append(process)
    status, body = health_when_up(process, port)
    assert status == 200
    assert body["checks"] == {"database": "ok", "email": "log", "rate_limiter": "ok"}
    assert list(empty_dir.iterdir()) == []  # Postgres: nothing written beside it
