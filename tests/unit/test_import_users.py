"""The import use case over the memory fakes: batches, refusals, re-runs, events, sign-in."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import bcrypt
import jsonschema  # type: ignore[import-untyped]
import pytest

from identity.adapters import user_formats
from identity.adapters.memory.user_imports import MemoryImportRunRepository, MemoryUserImports
from identity.application.imports import ImportUsers, RunImport
from identity.domain.errors import StorageUnavailableError
from identity.domain.events import EventType
from identity.domain.imports import ImportedUser, ImportState, OnConflict, Refusal
from tests.fakes import Services, make_services

OLD = "an old password 12"


@pytest.fixture
async def services() -> Services:
    return await make_services()


def _importer(services: Services) -> tuple[RunImport, MemoryUserImports, MemoryImportRunRepository]:
    writer, runs = MemoryUserImports(services.store), MemoryImportRunRepository()
    return RunImport(writer, runs, services.hasher, services.clock, services.uow), writer, runs


async def _records(lines: Iterable[bytes]) -> AsyncIterator[ImportedUser | Refusal]:
    stream = io.BufferedReader(io.BytesIO(b"".join(lines)))
    for record in user_formats.read_file(stream, "identity"):
        yield record


def _user(email: str, password_hash: str | None = None, **extra: object) -> bytes:
    record = {"email": email, "email_verified": True, "password_hash": password_hash, **extra}
    return json.dumps(record).encode() + b"\n"


async def test_a_run_imports_refuses_per_record_and_records_one_event(services: Services) -> None:
    run_import, _, runs = _importer(services)
    old_hash = bcrypt.hashpw(OLD.encode(), bcrypt.gensalt(4)).decode()
    refused: list[Refusal] = []
    lines = [_user(f"u{i}@example.com", old_hash) for i in range(7)]
    lines.insert(3, b"\xff\xfe not utf-8\n")
    lines.append(_user("u1@example.com"))
    lines.append(_user("bad@example.com", "md5$x$y"))
    command = ImportUsers(
        tenant_id=services.tenant.id,
        records=_records(lines),
        batch_size=3,
        on_refusal=refused.append,
    )
    run = await run_import(command)
    assert (run.state, run.imported, run.skipped, run.failed, run.total) == (
        ImportState.DONE,
        7,
        0,
        3,
        10,
    )
    assert [r.line for r in refused] == [4, 9, 10]
    stored = await runs.get(services.tenant.id, run.id)
    assert stored is not None and stored.state is ImportState.DONE
    assert [e.line for e in stored.errors] == [4, 9, 10]
    async with services.uow() as uow:
        events = await uow.events.list(services.tenant.id, limit=10)
    imported = [e for e in events if e.type is EventType.USERS_IMPORTED]
    assert len(imported) == 1
    assert dict(imported[0].data) == {
        "import_id": str(run.id),
        "imported": 7,
        "skipped": 0,
        "failed": 3,
    }

    # The old password signs in once the hash is checked, and the hash is replaced.
    await services.log_in("u5@example.com", OLD)
    async with services.uow() as uow:
        account = await uow.accounts.get_by_email(services.tenant.id, "u5@example.com")
        assert account is not None and account.password_hash is not None
        assert account.password_hash.startswith("bcrypt_sha256$")
        mine = await uow.events.list(services.tenant.id, limit=10, user_id=account.id)
    assert EventType.PASSWORD_REHASHED in {e.type for e in mine}

    # Again: nothing twice; with update, the stored users take the new fields.
    again = await run_import(
        ImportUsers(tenant_id=services.tenant.id, records=_records(lines), batch_size=3)
    )
    assert (again.imported, again.skipped) == (0, 7)
    renamed = [_user("u0@example.com", old_hash, full_name="Renamed")]
    updated = await run_import(
        ImportUsers(
            tenant_id=services.tenant.id,
            records=_records(renamed),
            on_conflict=OnConflict.UPDATE,
        )
    )
    assert updated.imported == 1
    async with services.uow() as uow:
        account = await uow.accounts.get_by_email(services.tenant.id, "u0@example.com")
        assert account is not None and account.full_name == "Renamed"


async def test_dry_run_writes_nothing_and_records_no_event(services: Services) -> None:
    run_import, _, _ = _importer(services)
    run = await run_import(
        ImportUsers(
            tenant_id=services.tenant.id,
            records=_records([_user("dry@example.com")]),
            dry_run=True,
        )
    )
    assert run.imported == 1
    async with services.uow() as uow:
        assert await uow.accounts.get_by_email(services.tenant.id, "dry@example.com") is None
        events = await uow.events.list(services.tenant.id, limit=10)
    assert not [e for e in events if e.type is EventType.USERS_IMPORTED]


async def test_a_storage_failure_marks_the_run_failed(services: Services) -> None:
    run_import, _, runs = _importer(services)
    services.store.available = False
    with pytest.raises(StorageUnavailableError):
        await run_import(
            ImportUsers(tenant_id=services.tenant.id, records=_records([_user("x@example.com")]))
        )
    services.store.available = True
    [stored] = runs._runs.values()
    assert stored.state is ImportState.FAILED


async def test_export_round_trips_through_the_identity_format(services: Services) -> None:
    run_import, writer, _ = _importer(services)
    line = _user(
        "meta@example.com",
        bcrypt.hashpw(OLD.encode(), bcrypt.gensalt(4)).decode(),
        app_metadata={"plan": "pro"},
        identities=[{"provider": "github", "subject": "7"}],
        totp={"secret": "JBSWY3DPEHPK3PXP"},
    )
    await run_import(ImportUsers(tenant_id=services.tenant.id, records=_records([line])))
    public = [u async for u in writer.export(services.tenant.id, with_secrets=False)]
    assert public[0].password_hash is None and public[0].totp_secret is None
    assert public[0].app_metadata == {"plan": "pro"}
    [full] = [u async for u in writer.export(services.tenant.id, with_secrets=True)]
    record = user_formats.to_identity(full)
    assert record["totp"] == {"secret": "JBSWY3DPEHPK3PXP"}
    assert record["identities"] == [{"provider": "github", "subject": "7"}]
    assert user_formats.from_identity(record, 1) == full


SCHEMA = json.loads(
    (Path(__file__).parents[2] / "docs" / "identity-users.schema.json").read_text("utf-8")
)


async def test_exported_records_follow_the_documented_schema(services: Services) -> None:
    schema = SCHEMA
    run_import, writer, _ = _importer(services)
    line = _user(
        "schema@example.com",
        bcrypt.hashpw(OLD.encode(), bcrypt.gensalt(4)).decode(),
        full_name="S",
        user_metadata={"a": [1]},
        identities=[{"provider": "google", "subject": "g"}],
        totp={"secret": "JBSWY3DPEHPK3PXP"},
    )
    await run_import(ImportUsers(tenant_id=services.tenant.id, records=_records([line])))
    for secrets in (False, True):
        async for user in writer.export(services.tenant.id, with_secrets=secrets):
            jsonschema.validate(user_formats.to_identity(user), schema)
