"""The ``identity`` command line (API.md §7), run in-process on real databases.

``main()`` runs its own event loop (``asyncio.run``), so these tests are plain
functions; accounts are seeded the same way, through the container's unit of
work, on a loop of their own.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import secrets
import stat
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.signing_keys import StoredSigningKey
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.sessions import Session
from identity.entrypoints.cli import main
from identity.entrypoints.container import Container
from identity.entrypoints.settings import load_settings

T = TypeVar("T")
EMAIL = "ann@example.com"


@attrs.frozen
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


class Cli:
    """``identity ...`` in this process, with its exit code and captured output."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> Run:
        self._capsys.readouterr()  # drop whatever came before
        code = main(list(argv))
        out, err = self._capsys.readouterr()
        return Run(code, out, err)

    def ok(self, *argv: str) -> Any:
        run = self(*argv)
        assert run.code == 0, run.err
        return run.json()

    def fails(self, *argv: str, code: int = 1) -> str:
        """Assert the exit ``code``; return the last line on stderr (the error)."""
        run = self(*argv)
        assert run.code == code, (run.out, run.err)
        assert run.out == ""
        lines = run.err.strip().splitlines()
        assert lines, "no message on stderr"
        assert lines[-1].startswith("identity: "), run.err
        return lines[-1]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """``main()`` configures the root logger for a process; give the next test its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    access = logging.getLogger("aiohttp.access")
    access_disabled = access.disabled
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    access.disabled = access_disabled


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ``IDENTITY_*`` setting from the outer environment reaches the CLI."""
    for name in list(os.environ):
        if name.startswith("IDENTITY_") and not name.startswith("IDENTITY_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDENTITY_LOG_LEVEL", "WARNING")
    return monkeypatch


def use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("IDENTITY_DATABASE_URL", url)
    monkeypatch.setenv("IDENTITY_SECRET_KEY", secrets.token_urlsafe(30))


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


@pytest.fixture
def postgres_cli(cli: Cli, clean_env: pytest.MonkeyPatch, migrated_postgres_url: str) -> Cli:
    use_database(clean_env, migrated_postgres_url)
    return cli


def with_container(work: Callable[[Container], Awaitable[T]]) -> T:
    """Run ``work`` against a container on the CLI's settings (the environment)."""

    async def run() -> T:
        container = Container()
        container.settings.override(load_settings())
        try:
            return await work(container)
        finally:
            await container.engine().dispose()

    return asyncio.run(run())


def add_account(email: str, tenant: str = "default", sessions: int = 0) -> uuid.UUID:
    """A verified account of ``tenant`` with ``sessions`` live sessions."""

    async def work(container: Container) -> uuid.UUID:
        now = container.clock().now()
        async with container.uow() as uow:
            found = await uow.tenants.get_by_slug(tenant)
            assert found is not None, tenant
            account = Account(
                id=uuid.uuid4(),
                tenant_id=found.id,
                email=Email(email),
                created_at=now,
                updated_at=now,
                is_verified=True,
                verified_at=now,
            )
            await uow.accounts.add(account)
            for _ in range(sessions):
                await uow.sessions.add(
                    Session(
                        id=uuid.uuid4(),
                        tenant_id=found.id,
                        user_id=account.id,
                        created_at=now,
                        last_used_at=now,
                        refresh_jti=secrets.token_hex(16),
                        refresh_issued_at=now,
                        expires_at=now + container.policy().refresh_token_ttl,
                    )
                )
            await uow.commit()
        return account.id

    return with_container(work)


def recorded_events(account_id: uuid.UUID) -> list[tuple[str, dict[str, object]]]:
    """The account's security events, oldest first: (type, data)."""

    async def work(container: Container) -> list[tuple[str, dict[str, object]]]:
        async with container.uow() as uow:
            tenant = await uow.tenants.get_by_slug("default")
            assert tenant is not None
            found = await uow.events.list(tenant.id, limit=50, user_id=account_id)
        return [(event.type.value, dict(event.data)) for event in reversed(found)]

    return with_container(work)


def stored_keys() -> list[StoredSigningKey]:
    async def work(container: Container) -> list[StoredSigningKey]:
        return await container.key_store().stored()

    return with_container(work)


def table_names(url: str) -> set[str]:
    async def work() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                names = await connection.run_sync(lambda c: inspect(c).get_table_names())
                return set(names)
        finally:
            await engine.dispose()

    return asyncio.run(work())


def slugs(listing: list[dict[str, Any]]) -> dict[str, bool]:
    """slug -> disabled."""
    return {row["slug"]: row["disabled"] for row in listing}


# --- tenants ---------------------------------------------------------------------------


def test_tenants_create_then_list(postgres_cli: Cli) -> None:
    assert slugs(postgres_cli.ok("tenants", "list")) == {"default": False}

    created = postgres_cli.ok("tenants", "create", "acme", "--name", "Acme")
    assert (created["slug"], created["name"]) == ("acme", "Acme")
    uuid.UUID(created["id"])

    listing = postgres_cli.ok("tenants", "list")
    assert slugs(listing) == {"default": False, "acme": False}
    [acme] = [row for row in listing if row["slug"] == "acme"]
    assert acme == {"id": created["id"], "slug": "acme", "name": "Acme", "disabled": False}


def test_tenants_create_refuses_a_duplicate_and_a_bad_slug(postgres_cli: Cli) -> None:
    postgres_cli.ok("tenants", "create", "acme")

    message = postgres_cli.fails("tenants", "create", "acme", "--name", "Another")
    assert "acme" in message and "exist" in message.lower(), message
    message = postgres_cli.fails("tenants", "create", "default")
    assert "default" in message and "exist" in message.lower(), message

    for bad in ("Acme", "ac_me", "acme-", "a" * 64, "ac me", "acmé"):
        message = postgres_cli.fails("tenants", "create", bad)
        assert "slug" in message, message
    assert slugs(postgres_cli.ok("tenants", "list")) == {"default": False, "acme": False}


def test_tenants_set_stores_a_known_setting_and_refuses_others(postgres_cli: Cli) -> None:
    postgres_cli.ok("tenants", "create", "acme")

    shown = postgres_cli.ok("tenants", "set", "acme", "access_token_ttl", "60")
    assert shown == {"slug": "acme", "settings": {"access_token_ttl": "60"}}
    shown = postgres_cli.ok("tenants", "set", "acme", "rate_limit_login", "2/minute")
    assert shown["settings"] == {"access_token_ttl": "60", "rate_limit_login": "2/minute"}

    message = postgres_cli.fails("tenants", "set", "acme", "bogus", "1")
    assert "bogus" in message, message
    message = postgres_cli.fails("tenants", "set", "acme", "access_token_ttl", "-5")
    assert "access_token_ttl" in message, message
    message = postgres_cli.fails("tenants", "set", "nowhere", "access_token_ttl", "60")
    assert "nowhere" in message, message

    # A refused value left the stored ones alone; a secret is never echoed.
    secret = "google-secret-" + secrets.token_hex(8)
    run = postgres_cli("tenants", "set", "acme", "google_client_secret", secret)
    assert secret not in run.out + run.err
    assert run.json()["settings"] == {
        "access_token_ttl": "60",
        "rate_limit_login": "2/minute",
        "google_client_secret": "********",
    }


def test_tenants_disable_and_enable(postgres_cli: Cli) -> None:
    postgres_cli.ok("tenants", "create", "acme")

    assert postgres_cli.ok("tenants", "disable", "acme") == {"slug": "acme", "disabled": True}
    assert slugs(postgres_cli.ok("tenants", "list")) == {"default": False, "acme": True}
    assert postgres_cli.ok("tenants", "enable", "acme") == {"slug": "acme", "disabled": False}
    assert slugs(postgres_cli.ok("tenants", "list")) == {"default": False, "acme": False}
    assert "nowhere" in postgres_cli.fails("tenants", "disable", "nowhere")


# --- users -----------------------------------------------------------------------------


def test_users_show_a_missing_user_fails(postgres_cli: Cli) -> None:
    message = postgres_cli.fails("users", "show", EMAIL)
    assert EMAIL in message, message
    assert postgres_cli.fails("users", "show", "not-an-email")


def test_users_disable_ends_sessions_and_enable_restores(postgres_cli: Cli) -> None:
    account_id = add_account(EMAIL, sessions=2)

    shown = postgres_cli.ok("users", "show", EMAIL)
    assert shown["id"] == str(account_id)
    assert (shown["email"], shown["tenant"]) == (EMAIL, "default")
    assert (shown["is_active"], shown["is_verified"], shown["has_password"]) == (True, True, False)
    assert shown["mfa_enabled"] is False
    # The address is normalised as the API does: the domain's case does not matter.
    assert postgres_cli.ok("users", "show", "ann@EXAMPLE.com")["id"] == str(account_id)

    disabled = postgres_cli.ok("users", "disable", EMAIL)
    assert (disabled["is_active"], disabled["sessions_revoked"]) == (False, 2)
    assert postgres_cli.ok("users", "show", EMAIL)["is_active"] is False
    again = postgres_cli.ok("users", "disable", EMAIL)
    assert (again["is_active"], again["sessions_revoked"]) == (False, 0)

    enabled = postgres_cli.ok("users", "enable", EMAIL)
    assert (enabled["is_active"], enabled["sessions_revoked"]) == (True, 0)
    assert postgres_cli.ok("users", "show", EMAIL)["is_active"] is True
    # The second disable changed nothing and recorded nothing.
    assert sorted(recorded_events(account_id), key=lambda e: e[0]) == [
        ("session.revoked", {"reason": "account_disabled"}),
        ("session.revoked", {"reason": "account_disabled"}),
        ("user.disabled", {}),
        ("user.enabled", {}),
    ]


def test_users_commands_are_scoped_by_tenant(postgres_cli: Cli) -> None:
    postgres_cli.ok("tenants", "create", "acme")
    default_id = add_account(EMAIL)

    assert EMAIL in postgres_cli.fails("users", "show", EMAIL, "--tenant", "acme")
    assert EMAIL in postgres_cli.fails("users", "disable", EMAIL, "--tenant", "acme")
    assert "nowhere" in postgres_cli.fails("users", "show", EMAIL, "--tenant", "nowhere")

    acme_id = add_account(EMAIL, tenant="acme", sessions=1)
    in_acme = postgres_cli.ok("users", "show", EMAIL, "--tenant", "acme")
    assert (in_acme["id"], in_acme["tenant"]) == (str(acme_id), "acme")

    disabled = postgres_cli.ok("users", "disable", EMAIL, "--tenant", "acme")
    assert (disabled["id"], disabled["sessions_revoked"]) == (str(acme_id), 1)
    in_default = postgres_cli.ok("users", "show", EMAIL)
    assert (in_default["id"], in_default["is_active"]) == (str(default_id), True)
    assert postgres_cli.ok("users", "show", EMAIL, "--tenant", "acme")["is_active"] is False


# --- keys, migrate, configuration ------------------------------------------------------


def test_keys_rotate_adds_a_key_and_keeps_the_old_ones(postgres_cli: Cli) -> None:
    first = postgres_cli.ok("keys", "rotate")
    second = postgres_cli.ok("keys", "rotate")

    assert first["kid"] != second["kid"]
    assert first["algorithm"] == second["algorithm"] == "EdDSA"
    assert {key.kid for key in stored_keys()} == {first["kid"], second["kid"]}


def test_migrate_creates_the_schema_on_an_empty_database(
    cli: Cli, clean_env: pytest.MonkeyPatch, fresh_postgres_url: str
) -> None:
    use_database(clean_env, fresh_postgres_url)
    assert "tenants" not in table_names(fresh_postgres_url)

    run = cli("migrate")
    assert run.code == 0, run.err
    assert "migrations applied" in run.out
    assert {"tenants", "users", "sessions", "outbox", "signing_keys", "alembic_version"} <= (
        table_names(fresh_postgres_url)
    )
    assert cli("migrate").code == 0  # nothing pending: still fine
    assert slugs(cli.ok("tenants", "list")) == {"default": False}


# The CLI lets the exception through (a traceback) instead; see the helper's report.


def test_an_unmigrated_server_database_fails_with_a_message_and_is_left_alone(
    cli: Cli, clean_env: pytest.MonkeyPatch, fresh_postgres_url: str
) -> None:
    use_database(clean_env, fresh_postgres_url)
    try:
        message = cli.fails("tenants", "list")
        assert "migrate" in message, message
    finally:
        # Only the embedded SQLite default is migrated by the admin commands.
        assert "tenants" not in table_names(fresh_postgres_url)


def test_an_unreachable_database_fails_with_a_message(
    cli: Cli, clean_env: pytest.MonkeyPatch
) -> None:
    use_database(clean_env, "postgresql+asyncpg://postgres@127.0.0.1:1/nowhere")
    cli.fails("tenants", "list")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"IDENTITY_PORT": "abc"}, "IDENTITY_PORT"),
        ({"IDENTITY_ACCESS_TOKEN_TTL": "soon"}, "IDENTITY_ACCESS_TOKEN_TTL"),
        (
            {"IDENTITY_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"},
            "IDENTITY_SECRET_KEY",
        ),
    ],
)
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(
    cli: Cli, clean_env: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], named: str
) -> None:
    clean_env.chdir(tmp_path)
    for name, value in env.items():
        clean_env.setenv(name, value)

    for argv in (("tenants", "list"), ("migrate",), ("keys", "rotate")):
        run = cli(*argv)
        assert run.code == 2, run
        assert run.out == ""
        lines = run.err.strip().splitlines()
        assert len(lines) == 1, run.err
        assert named in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing was created on the way out


# --- the embedded SQLite default ---------------------------------------------------------


def test_the_embedded_default_migrates_itself_and_keeps_a_private_secret(
    cli: Cli, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.chdir(tmp_path)

    assert slugs(cli.ok("tenants", "list")) == {"default": False}

    assert (tmp_path / "identity.db").is_file()
    secret_file = tmp_path / "identity.db.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text()
    assert len(secret.strip()) >= 32

    cli.ok("tenants", "create", "acme")
    cli.ok("keys", "rotate")
    assert slugs(cli.ok("tenants", "list")) == {"default": False, "acme": False}
    assert secret_file.read_text() == secret  # made once, then reused
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600


def test_tenants_set_takes_each_providers_client(postgres_cli: Cli) -> None:
    postgres_cli.ok("tenants", "create", "acme")
    secret = "gh-secret-" + secrets.token_hex(8)

    postgres_cli.ok("tenants", "set", "acme", "oidc_corp_client_id", "acme-at-corp")
    run = postgres_cli("tenants", "set", "acme", "github_client_secret", secret)

    assert secret not in run.out + run.err
    assert run.json()["settings"] == {
        "oidc_corp_client_id": "acme-at-corp",
        "github_client_secret": "********",
    }
    message = postgres_cli.fails("tenants", "set", "acme", "gitlab_client_id", "x")
    assert "gitlab_client_id" in message and "oidc_<name>_client_id" in message


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_serve_stops_with_one_line_naming_a_discovery_url_that_can_never_work(
    postgres_cli: Cli, clean_env: pytest.MonkeyPatch
) -> None:
    # A live server without a discovery document: serve runs its own event loop
    # here, so this one answers from a thread.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    clean_env.setenv("IDENTITY_OIDC_PROVIDERS", "corp")
    clean_env.setenv("IDENTITY_OIDC_CORP_CLIENT_ID", "corp-client")
    clean_env.setenv("IDENTITY_OIDC_CORP_CLIENT_SECRET", "corp-secret")
    clean_env.setenv(
        "IDENTITY_OIDC_CORP_DISCOVERY_URL",
        f"http://127.0.0.1:{server.server_address[1]}/.well-known/openid-configuration",
    )
    try:
        message = postgres_cli.fails("serve", "--port", "0", code=2)
    finally:
        server.shutdown()
        thread.join()

    assert message.startswith(
        "identity: configuration error: IDENTITY_OIDC_CORP_DISCOVERY_URL: discovery failed"
    ), message
    assert "404" in message
