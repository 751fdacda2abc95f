"""Moving users in and out through the admin API (API.md §18)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import AsyncIterator
from datetime import datetime
from typing import IO
from uuid import UUID

import attrs
from aiohttp import web
from dependency_injector.wiring import Provide, inject

from identity.adapters import user_formats
from identity.application.imports import ImportUsers, RunImport
from identity.application.ports import ImportRunRepository, UserExporter
from identity.domain.api_keys import Scope
from identity.domain.imports import ImportedUser, ImportRun, Refusal
from identity.entrypoints.background_imports import BackgroundImports
from identity.entrypoints.container import Container
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.keys import request_tenant
from identity.entrypoints.http.principals import service
from identity.entrypoints.http.problems import Problem

log = logging.getLogger("identity.imports")

endpoints = d.Endpoints(tag="admin")
WRITE = d.api_key(Scope.USERS_WRITE)
READ = d.api_key(Scope.USERS_READ)
NDJSON = "application/x-ndjson"
ACCEPTED_TYPES = frozenset({NDJSON, "application/jsonl", "application/json", "text/plain"})
_CHUNK = 64 * 1024


@attrs.frozen
class ImportStarted:
    import_id: UUID = d.out("follow it at `GET /admin/imports/{import_id}`")


@attrs.frozen
class RefusedRecord:
    reason: str
    line: int = d.out("the record's 1-based position in the body")


@attrs.frozen
class ImportProgress:
    """An import run: its state and counts so far."""

    id: UUID
    imported: int
    errors: list[RefusedRecord]
    started_at: datetime
    finished_at: datetime | None
    state: str = d.out("`running`, `done` or `failed`")
    total: int = d.out("records read so far")
    skipped: int = d.out("records whose email (or id) was already there")
    failed: int = d.out("records refused; the first 100 are in `errors`")

    @classmethod
    def of(cls, run: ImportRun) -> ImportProgress:
        return cls(
            id=run.id,
            state=run.state.value,
            total=run.total,
            imported=run.imported,
            skipped=run.skipped,
            failed=run.failed,
            errors=[RefusedRecord(line=e.line, reason=e.reason) for e in run.errors],
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


@endpoints.post(
    "/admin/users/import",
    summary="Import users (NDJSON in the identity format)",
    description=(
        "The body, of any size, is one user per line in the `identity` format "
        "(docs/identity-users.schema.json). It is stored, then imported in the "
        "background: follow the run at `GET /admin/imports/{import_id}`."
    ),
    ok=ImportStarted,
    status=202,
    auth=WRITE,
    stream_in=NDJSON,
)
@inject
async def import_users(
    request: web.Request,
    run_import: RunImport = Provide[Container.run_import],
    jobs: BackgroundImports = Provide[Container.background_imports],
) -> ImportStarted:
    if request.content_type not in ACCEPTED_TYPES:
        raise Problem(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            f"Send the body as {NDJSON}.",
        )
    tenant = request_tenant(request)
    # On disk, not in memory: the body may be any size. Handed to the background run.
    spool = tempfile.TemporaryFile()
    try:
        while chunk := await request.content.read(_CHUNK):
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    command = ImportUsers(
        tenant_id=tenant.id,
        records=_records(spool),
    )
    # The run is recorded before the answer, so its id can be read at once.
    await run_import.begin(command)
    jobs.start(_run(run_import, command, spool))
    return ImportStarted(command.run_id)


async def _run(run_import: RunImport, command: ImportUsers, spool: IO[bytes]) -> None:
    try:
        run = await run_import(command)
        log.info(
            "import %s done: %d imported, %d skipped, %d failed",
            run.id,
            run.imported,
            run.skipped,
            run.failed,
        )
    except Exception:
        log.exception("import %s failed", command.run_id)
    finally:
        spool.close()


def _records(spool: IO[bytes]) -> AsyncIterator[ImportedUser | Refusal]:
    """The stored body's records, parsed a few hundred at a time in a worker thread,
    so a long import never holds the event loop that serves sign-ins."""
    return user_formats.as_async(user_formats.read_file(spool, "identity"))


@endpoints.get(
    "/admin/imports/{import_id}",
    summary="Read an import run's progress",
    path_params=(d.path_id("import_id", "the id `POST /admin/users/import` answered"),),
    ok=ImportProgress,
    auth=WRITE,
)
@inject
async def get_import(
    request: web.Request,
    import_id: UUID,
    runs: ImportRunRepository = Provide[Container.import_runs],
) -> ImportProgress:
    run = await runs.get(request_tenant(request).id, import_id)
    if run is None:
        raise Problem(404, "not_found", "Not found", "No import run with this id.")
    return ImportProgress.of(run)


@endpoints.get(
    "/admin/users/export",
    summary="Export users (NDJSON in the identity format)",
    description=(
        "Every user of the key's tenant, one per line, streamed. Password hashes, TOTP "
        "secrets and linked provider subjects only for a key with `users:export`."
    ),
    ok_description="one user per line (docs/identity-users.schema.json)",
    auth=READ,
    content=NDJSON,
)
@inject
async def export_users(
    request: web.Request,
    exporter: UserExporter = Provide[Container.user_exporter],
) -> web.StreamResponse:
    tenant = request_tenant(request)
    with_secrets = Scope.USERS_EXPORT in service(request).scopes
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    buffer: list[bytes] = []
    size = 0
    async for text in exporter.ndjson(tenant.id, with_secrets=with_secrets):
        chunk = text.encode("utf-8")
        buffer.append(chunk)
        size += len(chunk)
        if size >= _CHUNK:
            await response.write(b"".join(buffer))
            buffer, size = [], 0
    if buffer:
        await response.write(b"".join(buffer))
    await response.write_eof()
    return response
