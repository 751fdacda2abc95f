"""``identity users import`` / ``export`` (API.md §18) on real databases.

Each vendor's file is written here in that vendor's documented layout, with
known passwords; the imported users then sign in with the old password, which
replaces the hash with the service's own and records ``password.rehashed``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pyotp
import pytest
from argon2 import PasswordHasher as Argon2Hasher
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters.sqlalchemy import tables as t
from identity.application.account_passwords import LogIn
from identity.domain.emails import Email
from identity.domain.errors import DomainError
from identity.entrypoints.container import Container
from tests.integration.test_cli import Cli, with_container

PASSWORD = "an old password 1"
FIREBASE_CONFIG = {
    "algorithm": "SCRYPT",
    "base64_signer_key": (
        "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
    ),
    "base64_salt_separator": "Bw==",
    "rounds": 8,
    "mem_cost": 14,
}


def _bcrypt(password: str = PASSWORD, prefix: str = "$2b$") -> str:
    return prefix + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()[4:]


def _argon2() -> str:
    return Argon2Hasher(time_cost=1, memory_cost=64, parallelism=1).hash(PASSWORD)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def _pbkdf2_phc() -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 1000, 32)
    return f"$pbkdf2-sha256$i=1000,l=32${_b64(salt)}${_b64(digest)}"


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    database_url: str,
    tmp_path: Path,
) -> Iterator[Cli]:
    import os

    for name in list(os.environ):
        if name.startswith("IDENTITY_") and not name.startswith("IDENTITY_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDENTITY_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("IDENTITY_DATABASE_URL", database_url)
    monkeypatch.setenv("IDENTITY_SECRET_KEY", "s" * 40)
    monkeypatch.setenv("IDENTITY_BCRYPT_ROUNDS", "4")
    monkeypatch.chdir(tmp_path)
    yield Cli(capsys)


def _write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _import(cli: Cli, *argv: str, code: int = 0) -> dict[str, Any]:
    run = cli("users", "import", *argv)
    assert run.code == code, run.err
    summary: dict[str, Any] = json.loads(run.out)
    return summary


def _report(summary: dict[str, Any]) -> list[dict[str, Any]]:
    lines = Path(summary["report"]).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _sign_in(email: str, password: str) -> tuple[bool, str | None, list[str]]:
    """Sign in through the use case: (succeeded, stored hash after, event types)."""

    async def work(container: Container) -> tuple[bool, str | None, list[str]]:
        tenant = await container.resolve_tenant()("default")
        ring = await container.key_store().load_ring(container.clock().now())
        container.keyring.override(ring)
        try:
            await container.log_in()(LogIn(tenant, Email(email), password))
            ok = True
        except DomainError:
            ok = False
        async with container.uow() as uow:
            account = await uow.accounts.get_by_email(tenant.id, email.casefold())
            assert account is not None, email
            events = await uow.events.list(tenant.id, limit=20, user_id=account.id)
        return ok, account.password_hash, [e.type.value for e in events]

    return with_container(work)


def _signs_in_and_is_rehashed(email: str, password: str = PASSWORD) -> None:
    assert not _sign_in(email, password + "x")[0]
    ok, stored, events = _sign_in(email, password)
    assert ok
    assert stored is not None and stored.startswith("bcrypt_sha256$")
    assert "password.rehashed" in events


def _user_row(email: str) -> Any:
    async def work(container: Container) -> Any:
        async with container.engine().connect() as conn:
            query = t.users.select().where(t.users.c.normalized_email == email.casefold())
            return (await conn.execute(query)).first()

    return with_container(work)


def test_identity_file_imports_every_kept_field_and_refuses_bad_records_one_by_one(
    cli: Cli, tmp_path: Path
) -> None:
    good = {
        "email": "Ann@Example.COM",
        "email_verified": True,
        "full_name": "Ann A.",
        "created_at": "2020-01-02T03:04:05+00:00",
        "password_hash": _bcrypt(prefix="$2y$"),
        "identities": [{"provider": "google", "subject": "g-123"}],
        "app_metadata": {"plan": "pro"},
        "user_metadata": {"theme": "dark"},
    }
    path = tmp_path / "users.ndjson"
    huge = b'{"email": "huge@example.com", "full_name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    body = (
        json.dumps(good).encode()
        + b"\n"
        + json.dumps(
            {"email": "bob@example.com", "password_hash": _argon2(), "email_verified": True}
        ).encode()
        + b"\n"
        + b"{not json\n"
        + b'{"email": "caf\xe9@example.com"}\n'
        + json.dumps({"email": "ann@example.com", "email_verified": True}).encode()
        + b"\n"
        + json.dumps({"email": "md5@example.com", "password_hash": "md5$abc$def"}).encode()
        + b"\n"
        + huge
        + b"\n"
        + json.dumps(
            {"email": "off@example.com", "disabled": True, "email_verified": True}
        ).encode()
        + b"\n"
        + b'{"email": "cut@example.com", "full_na'
    )
    path.write_bytes(body)
    summary = _import(cli, str(path), "--format", "identity", code=3)
    assert (summary["imported"], summary["skipped"], summary["failed"]) == (3, 0, 6)
    assert [r["line"] for r in _report(summary)] == [3, 4, 5, 6, 7, 9]
    reasons = {r["line"]: r["reason"] for r in _report(summary)}
    assert "UTF-8" in reasons[4] and "earlier record" in reasons[5]
    assert "format" in reasons[6] and "longer" in reasons[7]
    row = _user_row("ann@example.com")
    assert row.email == "Ann@example.com" and row.full_name == "Ann A." and row.is_verified
    assert row.app_metadata == {"plan": "pro"} and row.user_metadata == {"theme": "dark"}
    assert row.identities == "google"
    assert row.created_at.year == 2020
    assert not _user_row("off@example.com").is_active
    for email in ("ann@example.com", "bob@example.com"):
        _signs_in_and_is_rehashed(email)
    # The same file again imports nothing twice.
    again = _import(cli, str(path), "--format", "identity", code=3)
    assert (again["imported"], again["skipped"]) == (0, 3)


def test_auth0_array_with_bcrypt_and_custom_hashes(cli: Cli, tmp_path: Path) -> None:
    users = [
        {
            "email": "a0@example.com",
            "email_verified": True,
            "name": "Auth Zero",
            "password_hash": _bcrypt(prefix="$2a$"),
            "app_metadata": {"roles": ["admin"]},
            "user_metadata": {"lang": "fr"},
        },
        {
            "email": "a1@example.com",
            "email_verified": True,
            "custom_password_hash": {
                "algorithm": "argon2",
                "hash": {"value": _argon2(), "encoding": "utf8"},
            },
        },
        {
            "email": "a2@example.com",
            "email_verified": True,
            "custom_password_hash": {"algorithm": "md5", "hash": {"value": "abc"}},
        },
    ]
    path = tmp_path / "auth0.json"
    path.write_text(json.dumps(users, indent=2), encoding="utf-8")
    summary = _import(cli, str(path), "--format", "auth0", code=3)
    assert (summary["imported"], summary["failed"]) == (2, 1)
    assert _report(summary) == [{"line": 3, "reason": "the hash algorithm 'md5' is not supported"}]
    assert _user_row("a0@example.com").app_metadata == {"roles": ["admin"]}
    _signs_in_and_is_rehashed("a0@example.com")
    _signs_in_and_is_rehashed("a1@example.com")


def test_supabase_rows(cli: Cli, tmp_path: Path) -> None:
    row = {
        "id": str(uuid.uuid4()),
        "email": "sb@example.com",
        "encrypted_password": _bcrypt(prefix="$2a$"),
        "email_confirmed_at": "2023-05-01T10:00:00.000000+00:00",
        "raw_app_meta_data": {"provider": "email", "providers": ["email"]},
        "raw_user_meta_data": {"full_name": "Supa Base"},
        "created_at": "2023-05-01T09:59:00.000000+00:00",
        "banned_until": None,
        "deleted_at": None,
    }
    path = _write_lines(tmp_path / "supabase.ndjson", [row])
    summary = _import(cli, str(path), "--format", "supabase")
    assert summary["imported"] == 1
    stored = _user_row("sb@example.com")
    assert str(stored.id) == row["id"] and stored.full_name == "Supa Base"
    _signs_in_and_is_rehashed("sb@example.com")


def test_firebase_export_with_the_project_hash_parameters(cli: Cli, tmp_path: Path) -> None:
    document = {
        "users": [
            {
                "localId": "fb-1",
                "email": "user1@example.com",
                "emailVerified": True,
                "passwordHash": (
                    "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ=="
                ),
                "salt": "42xEC+ixf3L2lw==",
                "displayName": "Fire Base",
                "createdAt": "1600000000000",
                "providerUserInfo": [{"providerId": "google.com", "rawId": "g-777"}],
            }
        ]
    }
    path = tmp_path / "firebase.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    config = tmp_path / "hash.json"
    config.write_text(json.dumps(FIREBASE_CONFIG), encoding="utf-8")
    refused = _import(cli, str(path), "--format", "firebase", code=3)
    assert "hash-config" in _report(refused)[0]["reason"]
    summary = _import(cli, str(path), "--format", "firebase", "--hash-config", str(config))
    assert summary["imported"] == 1
    assert _user_row("user1@example.com").identities == "google"
    _signs_in_and_is_rehashed("user1@example.com", "user1password")


def test_kratos_identities(cli: Cli, tmp_path: Path) -> None:
    identity = {
        "id": str(uuid.uuid4()),
        "schema_id": "default",
        "state": "active",
        "traits": {"email": "kr@example.com", "name": {"first": "Kra", "last": "Tos"}},
        "verifiable_addresses": [{"value": "kr@example.com", "verified": True, "via": "email"}],
        "credentials": {
            "password": {"type": "password", "config": {"hashed_password": _pbkdf2_phc()}},
            "oidc": {"config": {"providers": [{"provider": "github", "subject": "12345"}]}},
        },
        "metadata_public": {"tier": 1},
        "metadata_admin": {"note": "vip"},
        "created_at": "2022-02-02T02:02:02Z",
    }
    path = tmp_path / "kratos.json"
    path.write_text(json.dumps([identity]), encoding="utf-8")
    summary = _import(cli, str(path), "--format", "kratos")
    assert summary["imported"] == 1
    stored = _user_row("kr@example.com")
    assert stored.full_name == "Kra Tos" and stored.identities == "github"
    _signs_in_and_is_rehashed("kr@example.com")


def test_seed_database_laid_out_as_the_reference_service(cli: Cli, fresh_postgres_url: str) -> None:
    async def seed() -> None:
        engine = create_async_engine(fresh_postgres_url)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "CREATE TABLE users (id SERIAL PRIMARY KEY, email VARCHAR(255) UNIQUE NOT NULL,"
                    " hashed_password VARCHAR(255), full_name VARCHAR(255),"
                    " is_active BOOLEAN DEFAULT TRUE, is_verified BOOLEAN DEFAULT FALSE,"
                    " created_at TIMESTAMP WITH TIME ZONE DEFAULT now())"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO users (email, hashed_password, full_name, is_verified)"
                    " VALUES (:e, :h, :n, true)"
                ),
                [
                    {"e": "seed1@example.com", "h": _bcrypt(), "n": "Seed One"},
                    {"e": "seed2@example.com", "h": _bcrypt(), "n": None},
                    {"e": "not an email", "h": _bcrypt(), "n": None},
                ],
            )
        await engine.dispose()

    import asyncio

    asyncio.run(seed())
    url = fresh_postgres_url.replace("+asyncpg", "")
    summary = _import(cli, "--from-database", url, "--format", "seed", code=3)
    assert (summary["imported"], summary["failed"]) == (2, 1)
    assert _report(summary)[0]["line"] == 3
    _signs_in_and_is_rehashed("seed1@example.com")
    again = _import(cli, "--from-database", url, "--format", "seed", code=3)
    assert (again["imported"], again["skipped"]) == (0, 2)


def test_interrupted_import_rerun_completes_and_dry_run_writes_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    records = [
        {"email": f"u{i}@example.com", "email_verified": True, "password_hash": _bcrypt()}
        for i in range(5)
    ]
    path = _write_lines(tmp_path / "all.ndjson", records)
    dry = _import(cli, str(path), "--format", "identity", "--dry-run")
    assert dry["imported"] == 5 and _user_row("u0@example.com") is None
    # A run that stopped after the first batch of two: those are in, the rest not.
    first = _write_lines(tmp_path / "first.ndjson", records[:2])
    _import(cli, str(first), "--format", "identity", "--batch-size", "2")
    summary = _import(cli, str(path), "--format", "identity", "--batch-size", "2")
    assert (summary["imported"], summary["skipped"]) == (3, 2)
    updated = _write_lines(tmp_path / "update.ndjson", [{**records[0], "full_name": "New Name"}])
    fail = _import(cli, str(updated), "--format", "identity", "--on-conflict", "fail", code=3)
    assert "exists" in _report(fail)[0]["reason"]
    _import(cli, str(updated), "--format", "identity", "--on-conflict", "update")
    assert _user_row("u0@example.com").full_name == "New Name"


def test_export_then_import_keeps_ids_passwords_and_totp(
    cli: Cli, tmp_path: Path, database_url: str
) -> None:
    secret = pyotp.random_base32()
    records = [
        {
            "email": "totp@example.com",
            "email_verified": True,
            "password_hash": _bcrypt(),
            "totp": {"secret": secret},
            "identities": [{"provider": "github", "subject": "42"}],
        },
        {"email": "plain@example.com", "email_verified": True, "password_hash": _argon2()},
    ]
    _import(cli, str(_write_lines(tmp_path / "in.ndjson", records)), "--format", "identity")
    _signs_in_and_is_rehashed("plain@example.com")
    exported = tmp_path / "out.ndjson"
    cli("users", "export", str(exported), "--with-secrets")
    lines = [json.loads(line) for line in exported.read_text().splitlines()]
    by_email = {line["email"]: line for line in lines}
    assert by_email["totp@example.com"]["totp"] == {"secret": secret}
    assert by_email["totp@example.com"]["identities"] == [{"provider": "github", "subject": "42"}]
    assert by_email["plain@example.com"]["password_hash"].startswith("bcrypt_sha256$")
    public = tmp_path / "public.ndjson"
    cli("users", "export", str(public))
    assert all("password_hash" not in json.loads(line) for line in public.read_text().splitlines())
    ids = {line["email"]: line["id"] for line in lines}

    # Into an empty deployment (another database): the same ids, and both still sign in.
    async def empty_database() -> None:
        engine = create_async_engine(database_url)
        async with engine.begin() as conn:
            for table in ("totp_factors", "external_identities", "security_events", "users"):
                await conn.execute(text(f"DELETE FROM {table}"))
        await engine.dispose()

    import asyncio

    asyncio.run(empty_database())
    summary = _import(cli, str(exported), "--format", "identity")
    assert summary["imported"] == 2
    assert str(_user_row("totp@example.com").id) == ids["totp@example.com"]
    assert _user_row("totp@example.com").mfa_enabled
    ok, stored, _ = _sign_in("plain@example.com", PASSWORD)
    assert ok and stored is not None and stored.startswith("bcrypt_sha256$")


def test_a_run_cancelled_mid_way_leaves_whole_users_and_a_rerun_completes(
    cli: Cli, tmp_path: Path
) -> None:
    from identity.adapters import user_formats
    from identity.application.imports import ImportUsers
    from identity.domain.imports import ImportState

    records = [
        {
            "email": f"c{i}@example.com",
            "email_verified": True,
            "password_hash": _bcrypt(),
            "identities": [{"provider": "github", "subject": f"gh-{i}"}],
        }
        for i in range(50)
    ]
    path = _write_lines(tmp_path / "cancel.ndjson", records)

    async def cancelled_run(container: Container) -> tuple[str, int, int]:
        tenant = await container.resolve_tenant()("default")

        async def stream() -> Any:
            with path.open("rb") as handle:
                for index, record in enumerate(user_formats.read_file(handle, "identity")):
                    if index == 25:
                        raise asyncio.CancelledError  # the process is stopped here
                    yield record

        command = ImportUsers(tenant_id=tenant.id, records=stream(), batch_size=10)
        with pytest.raises(asyncio.CancelledError):
            await container.run_import()(command)
        run = await container.import_runs().get(tenant.id, command.run_id)
        assert run is not None
        async with container.engine().connect() as conn:
            users = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
            links = (
                await conn.execute(text("SELECT count(*) FROM external_identities"))
            ).scalar_one()
        return run.state.value, users, links

    state, users, links = with_container(cancelled_run)
    assert state == ImportState.FAILED.value
    assert users == links and users in (10, 20)  # whole batches only, each user whole
    summary = _import(cli, str(path), "--format", "identity")
    assert (summary["imported"], summary["skipped"]) == (50 - users, users)
    _signs_in_and_is_rehashed("c49@example.com")


@pytest.mark.parametrize("on_conflict", ["skip", "fail"])
def test_batches_meeting_stored_users_or_a_kept_id_twice_are_written_again_looked_up(
    cli: Cli, tmp_path: Path, on_conflict: str
) -> None:
    # On Postgres a batch is first copied as all new: the stored user makes that fail
    # (rolled back to its savepoint, then looked up); the id kept twice fails the
    # looked-up batch too, which is then written one user at a time.
    stored = {"email": "stored@example.com", "email_verified": True, "password_hash": _bcrypt()}
    _import(cli, str(_write_lines(tmp_path / "a.ndjson", [stored])), "--format", "identity")
    kept = str(uuid.uuid4())
    records = [
        {**stored, "full_name": "Not Taken"},
        {"email": "new1@example.com", "email_verified": True, "password_hash": _bcrypt()},
        {
            "email": "new2@example.com",
            "email_verified": True,
            "id": kept,
            "password_hash": _bcrypt(),
        },
        {
            "email": "new3@example.com",
            "email_verified": True,
            "id": kept,
            "password_hash": _bcrypt(),
        },
        {"email": "new4@example.com", "email_verified": True, "password_hash": _bcrypt()},
    ]
    path = _write_lines(tmp_path / "b.ndjson", records)
    code = 0 if on_conflict == "skip" else 3
    summary = _import(
        cli, str(path), "--format", "identity", "--batch-size", "2",
        "--on-conflict", on_conflict, code=code,
    )  # fmt: skip
    if on_conflict == "skip":
        assert (summary["imported"], summary["skipped"], summary["failed"]) == (3, 2, 0)
    else:
        assert (summary["imported"], summary["skipped"], summary["failed"]) == (3, 0, 2)
        assert [r["line"] for r in _report(summary)] == [1, 4]
    assert _user_row("stored@example.com").full_name is None
    assert str(_user_row("new2@example.com").id) == kept
    assert _user_row("new3@example.com") is None
    assert _user_row("new4@example.com") is not None
    _signs_in_and_is_rehashed("new4@example.com")


def test_export_lines_are_the_identity_records_of_the_users(cli: Cli, tmp_path: Path) -> None:
    """``UserExporter.ndjson`` (made by Postgres itself there) says what ``to_identity``
    of ``export`` says, secrets or not."""
    from datetime import datetime

    from identity.adapters import user_formats

    records = [
        {
            "email": "Full@Example.com",
            "email_verified": True,
            "full_name": 'Zoë "Q" \\ Müller',
            "created_at": "2021-03-04T05:06:07.120000+00:00",
            "disabled": True,
            "password_hash": _argon2(),
            "app_metadata": {"roles": ["a", "b"], "nested": {"x": None, "y": 1.5}},
            "user_metadata": {"line": "one\ntwo", "ü": True},
            "identities": [
                {"provider": "github", "subject": "7"},
                {"provider": "google", "subject": "g-7"},
            ],
            "totp": {"secret": pyotp.random_base32()},
        },
        {"email": "bare@example.com"},
    ]
    _import(cli, str(_write_lines(tmp_path / "in.ndjson", records)), "--format", "identity")

    def normal(record: dict[str, Any]) -> dict[str, Any]:
        moment = record.pop("created_at")
        return {**record, "created_at": datetime.fromisoformat(moment)}

    async def work(container: Container) -> None:
        tenant = await container.resolve_tenant()("default")
        exporter = container.user_exporter()
        for with_secrets in (True, False):
            text = "".join(
                [chunk async for chunk in exporter.ndjson(tenant.id, with_secrets=with_secrets)]
            )
            assert text.endswith("\n") and text.count("\n") == 2
            lines = [normal(json.loads(line)) for line in text.splitlines()]
            expected = [
                normal(json.loads(json.dumps(user_formats.to_identity(user))))
                async for user in exporter.export(tenant.id, with_secrets=with_secrets)
            ]
            assert lines == expected
            if with_secrets:
                assert {line["email"] for line in lines if "totp" in line} == {"Full@example.com"}
                assert len(next(line for line in lines if "identities" in line)["identities"]) == 2

    with_container(work)


def test_a_big_import_renews_the_tables_statistics(
    cli: Cli, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plans the server prepared while ``users`` was small must not outlive its growth."""
    if not database_url.startswith("postgresql"):
        pytest.skip("statistics are Postgres's")
    from identity.adapters.sqlalchemy import pg_user_imports

    monkeypatch.setattr(pg_user_imports, "CHECK_GROWTH_EVERY", 10)
    monkeypatch.setattr(pg_user_imports, "MIN_ROWS_TO_ANALYZE", 20)
    records = [{"email": f"s{i}@example.com", "password_hash": _bcrypt()} for i in range(60)]
    path = _write_lines(tmp_path / "many.ndjson", records)

    async def analysed(container: Container) -> Any:
        async with container.engine().connect() as conn:
            # Set by ANALYZE (exactly, on a table this small) when it ends: no waiting
            # for the statistics collector.
            query = "SELECT reltuples FROM pg_class WHERE oid = 'users'::regclass"
            return (await conn.execute(text(query))).scalar_one()

    before = with_container(analysed)
    _import(cli, str(path), "--format", "identity", "--batch-size", "10")
    assert with_container(analysed) >= max(before, 0) + 30
