"""``IdentityTestServer`` start, stop, the sync wrapper, errors, overrides, the plugin."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from identity.adapters.email_syntax import normalise_email
from identity.application.ports import PasswordHasher, RateLimiter
from identity.domain.ratelimits import RateLimit, RateLimitDecision
from identity.entrypoints.settings import SettingsError
from identity.testing import IdentityTestServer, TestServerError

pytest_plugins = ["pytester"]

PASSWORD = "correct horse 42"
# The bar is 100 rounds: bench/testing_server.py runs those (about 9 s here);
# the suite runs fewer of the same loop to stay fast.
LEAK_ROUNDS = 20


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_sync_server_serves_a_plain_test_on_sqlite_and_leaves_no_thread() -> None:
    before = _threads()
    with IdentityTestServer(storage="sqlite").sync() as server:
        user = server.create_user("ada@example.com", password=PASSWORD)
        tokens = server.login("ada@example.com", PASSWORD)
        status, me = get_json(f"{server.url}/auth/me", tokens["access_token"])
        assert (status, me["id"]) == (200, str(user.id))
        assert server.mail.last_code("ada@example.com", "verification") is not None
        server.clock.advance(minutes=16)
        assert get_json(f"{server.url}/auth/me", tokens["access_token"])[0] == 401
        database = Path(server.settings.database_url.removeprefix("sqlite+aiosqlite:///"))
        assert database.exists()
    assert not database.exists()  # the temporary file goes with the server
    # Only new threads count: one a previous test left may end meanwhile.
    assert _threads() - before == set()


async def test_the_sync_server_serves_an_async_test_while_its_loop_runs() -> None:
    with IdentityTestServer().sync() as server:
        signed_in = server.sign_in()
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{server.url}/auth/me",
                headers={"Authorization": f"Bearer {signed_in.access_token}"},
            ) as response,
        ):
            assert response.status == 200
            assert (await response.json())["email"] == signed_in.email


def _threads() -> set[threading.Thread]:
    # The suite's own database worker (tests/databases.py) starts when it is first needed.
    return {t for t in threading.enumerate() if not t.name.startswith("test-databases")}


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_starting_and_stopping_many_times_leaks_no_task_socket_or_thread() -> None:
    async with IdentityTestServer():
        pass  # the first start pays for imports and caches
    tasks = asyncio.all_tasks()
    threads = _threads()
    descriptors = _open_descriptors()
    for _ in range(LEAK_ROUNDS):
        async with IdentityTestServer() as server:
            assert server.url
    assert asyncio.all_tasks() == tasks
    assert _threads() - threads == set()
    assert _open_descriptors() <= descriptors  # one a previous test left may close meanwhile


async def test_bad_arguments_say_what_to_pass() -> None:
    with pytest.raises(TestServerError, match="storage must be one of"):
        IdentityTestServer(storage="mysql")  # type: ignore[arg-type]
    with pytest.raises(TestServerError, match="database_url="):
        IdentityTestServer(storage="postgres")
    with pytest.raises(TestServerError, match="only for storage='postgres'"):
        IdentityTestServer(database_url="postgresql+asyncpg://x/y")
    with pytest.raises(SettingsError, match="IDENTITY_ACCESS_TOKEN_TTL"):
        async with IdentityTestServer(settings={"ACCESS_TOKEN_TTL": "soon"}):
            pass
    with pytest.raises(TestServerError, match="no provider named 'mailman'"):
        async with IdentityTestServer(overrides={"mailman": object()}):
            pass
    async with IdentityTestServer() as server:  # a failed start leaves nothing held
        with pytest.raises(TestServerError, match="another IdentityTestServer is running"):
            async with IdentityTestServer():
                pass
        assert server.url


async def test_testcontainers_without_a_container_engine_says_what_to_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing listens on port 1: the docker client finds no engine there.
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    with pytest.raises(TestServerError) as raised:
        async with IdentityTestServer(storage="testcontainers"):
            pass
    message = str(raised.value)
    assert "container engine" in message
    assert "storage='memory'" in message and "database_url=" in message


class RefuseEverything(RateLimiter):
    async def hit(self, key: str, limit: RateLimit) -> RateLimitDecision:
        return RateLimitDecision(
            allowed=False, limit=limit.count, remaining=0, reset_after=60, retry_after=60
        )


async def test_overrides_replace_a_provider_of_the_server() -> None:
    async with (
        IdentityTestServer(overrides={"rate_limiter": RefuseEverything()}) as server,
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
        ) as response,
    ):
        assert response.status == 429
        assert (await response.json())["code"] == "rate_limited"


class ScryptHasher(PasswordHasher):
    """A hasher without ``warm_up``: the service must start without that step."""

    async def hash(self, password: str) -> str:
        salt = os.urandom(16)
        return f"scrypt${salt.hex()}${self._digest(password, salt).hex()}"

    async def verify(self, password: str, hashed: str) -> bool:
        kind, salt, digest = hashed.split("$")
        expected = self._digest(password, bytes.fromhex(salt))
        return kind == "scrypt" and hmac.compare_digest(expected.hex(), digest)

    async def dummy_verify(self, password: str) -> None:
        self._digest(password, b"0" * 16)

    def needs_rehash(self, hashed: str) -> bool:
        return not hashed.startswith("scrypt$")

    @staticmethod
    def _digest(password: str, salt: bytes) -> bytes:
        return hashlib.scrypt(password.encode(), salt=salt, n=2**10, r=8, p=1)


async def test_a_swapped_hasher_makes_and_checks_the_stored_hashes() -> None:
    async with IdentityTestServer(overrides={"hasher": ScryptHasher()}) as server:
        user = await server.create_user("ada@example.com", password=PASSWORD)
        tokens = await server.login("ada@example.com", PASSWORD)
        assert tokens["user"]["id"] == str(user.id)
        stored = await server.container.user_admin().show(
            "default", normalise_email("ada@example.com")
        )
        assert stored.password_hash is not None and stored.password_hash.startswith("scrypt$")


def test_the_plugin_fixtures_options_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_downstream="""
        import json
        import urllib.request

        import pytest

        def test_user(identity_server, identity_user):
            assert identity_server.storage == "sqlite"
            request = urllib.request.Request(f"{identity_server.url}/auth/me")
            request.add_header("Authorization", f"Bearer {identity_user.access_token}")
            with urllib.request.urlopen(request, timeout=5) as response:
                assert json.loads(response.read())["id"] == str(identity_user.id)

        @pytest.mark.identity_settings(ACCESS_TOKEN_TTL="1m")
        def test_marker(identity_server, identity_user):
            assert identity_server.settings.policy.access_token_ttl.total_seconds() == 60
            identity_server.clock.advance(minutes=2)
            request = urllib.request.Request(f"{identity_server.url}/auth/me")
            request.add_header("Authorization", f"Bearer {identity_user.access_token}")
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == 401
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest("--identity-storage=sqlite", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_plugin_database_url_option_picks_postgres(
    pytester: pytest.Pytester, migrated_postgres_url: str
) -> None:
    pytester.makepyfile(
        test_downstream_postgres="""
        def test_user(identity_server, identity_user):
            assert identity_server.storage == "postgres"
            assert identity_server.settings.database_url.startswith("postgresql")
            assert identity_server.login(identity_user.email, identity_user.password)["user"][
                "id"
            ] == str(identity_user.id)
        """
    )
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        f"--identity-database-url={migrated_postgres_url}", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
