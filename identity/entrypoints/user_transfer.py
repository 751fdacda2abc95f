"""``identity users import`` and ``identity users export``: the command-line side of section 18."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from identity.adapters import user_formats
from identity.adapters.foreign_hashes import FirebaseHashConfig
from identity.application.imports import DEFAULT_BATCH_SIZE, ImportUsers
from identity.domain.imports import ImportedUser, ImportRun, OnConflict, Refusal
from identity.entrypoints.container import Container

log = logging.getLogger("identity.cli.import")

# The command's loop runs nothing else: its file reads and writes block it on purpose
# (the ASYNC230 exemptions below), as the rest of the CLI does.
EXIT_REFUSED = 3  # the run completed but some records were refused (see the report)


def add_commands(users: Any) -> None:
    """Add ``import`` and ``export`` to the ``users`` subcommands."""
    imp = users.add_parser("import", help="import users from a file or the seed database")
    imp.add_argument("file", nargs="?", help="the file to read (NDJSON or JSON)")
    imp.add_argument(
        "--format", required=True, choices=[*user_formats.FORMATS, "seed"], help="source format"
    )
    imp.add_argument("--tenant", default="default", help="tenant slug (default: default)")
    imp.add_argument("--hash-config", help="JSON file of the source's hash parameters (Firebase)")
    imp.add_argument(
        "--on-conflict", choices=[c.value for c in OnConflict], default=OnConflict.SKIP.value
    )
    imp.add_argument("--dry-run", action="store_true", help="read and check, write nothing")
    imp.add_argument("--report", help="where refused records go (default: a new file here)")
    imp.add_argument("--from-database", metavar="URL", help="the reference service's database")
    imp.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=argparse.SUPPRESS)
    imp.add_argument("--nice", type=int, default=10, help=argparse.SUPPRESS)
    exp = users.add_parser("export", help="export users as NDJSON (the identity format)")
    exp.add_argument("file", help="the file to write ('-': standard output)")
    exp.add_argument("--tenant", default="default", help="tenant slug (default: default)")
    exp.add_argument(
        "--with-secrets",
        action="store_true",
        help="include password hashes, TOTP secrets and linked provider subjects",
    )


async def run_command(container: Container, args: argparse.Namespace) -> int:
    if args.action == "export":
        return await _export(container, args)
    return await _import(container, args)


async def _import(container: Container, args: argparse.Namespace) -> int:
    if (args.format == "seed") != (args.from_database is not None):
        raise ValueError("--from-database goes with --format seed, and only with it")
    if args.format != "seed" and not args.file:
        raise ValueError("name the FILE to import")
    hash_config = None
    if args.hash_config:
        with open(args.hash_config, encoding="utf-8") as handle:  # noqa: ASYNC230
            hash_config = FirebaseHashConfig.from_mapping(json.load(handle))
    tenant = await container.resolve_tenant()(args.tenant)
    # A bulk job: the sign-ins served on the same machine go first.
    if args.nice:
        with contextlib.suppress(OSError, AttributeError):
            os.nice(args.nice)
    run_id = uuid.uuid4()
    report_path = Path(
        args.report or f"import-report-{datetime.now(UTC):%Y%m%dT%H%M%S}-{run_id.hex[:8]}.jsonl"
    )
    source: IO[bytes] | None = None
    size = 0
    if args.format == "seed":
        records: AsyncIterator[ImportedUser | Refusal] = seed_rows(args.from_database)
    else:
        source = open(args.file, "rb", buffering=1024 * 1024)  # noqa: ASYNC230
        size = os.fstat(source.fileno()).st_size
        records = user_formats.as_async(
            user_formats.read_file(source, args.format, hash_config=hash_config)
        )
    progress = _Progress(source, size)
    with report_path.open("w", encoding="utf-8") as report:  # noqa: ASYNC230

        def on_refusal(refusal: Refusal) -> None:
            report.write(json.dumps({"line": refusal.line, "reason": refusal.reason}) + "\n")

        try:
            with progress:
                run = await container.run_import()(
                    ImportUsers(
                        tenant_id=tenant.id,
                        records=records,
                        on_conflict=OnConflict(args.on_conflict),
                        dry_run=args.dry_run,
                        run_id=run_id,
                        batch_size=max(1, args.batch_size),
                        on_refusal=on_refusal,
                        on_progress=progress.update,
                    )
                )
        finally:
            if source is not None:
                source.close()
    summary = {
        "import_id": str(run.id),
        "tenant": tenant.slug,
        "dry_run": args.dry_run,
        "imported": run.imported,
        "skipped": run.skipped,
        "failed": run.failed,
        "seconds": round(progress.elapsed, 1),
        "report": str(report_path.resolve()),  # noqa: ASYNC240
    }
    print(json.dumps(summary, indent=2))
    return EXIT_REFUSED if run.failed else 0


async def seed_rows(url: str) -> AsyncIterator[ImportedUser | Refusal]:
    """The reference service's ``users`` table, streamed with a server-side cursor."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    engine = create_async_engine(parsed)
    try:
        async with engine.connect() as conn:
            result = await conn.stream(
                text("SELECT * FROM users ORDER BY created_at, id").execution_options(
                    yield_per=2000
                )
            )
            line = 0
            async for row in result.mappings():
                line += 1
                try:
                    yield user_formats.from_seed(dict(row), line)
                except (ValueError, TypeError) as error:
                    yield Refusal(line, str(error) or type(error).__name__)
                except Exception as error:  # a domain error of one row
                    yield Refusal(line, str(error) or type(error).__name__)
    finally:
        await engine.dispose()


async def _export(container: Container, args: argparse.Namespace) -> int:
    tenant = await container.resolve_tenant()(args.tenant)
    exporter = container.user_exporter()
    started = time.monotonic()
    count = 0
    out: IO[str]
    if args.file == "-":
        out = sys.stdout
    else:
        out = open(args.file, "w", encoding="utf-8", buffering=1024 * 1024)  # noqa: ASYNC230
    try:
        async for text in exporter.ndjson(tenant.id, with_secrets=args.with_secrets):
            out.write(text)
            count += text.count("\n")
    finally:
        if out is not sys.stdout:
            out.close()
    summary = {"exported": count, "seconds": round(time.monotonic() - started, 1)}
    print(json.dumps(summary), file=sys.stderr if args.file == "-" else sys.stdout)
    return 0


class _Progress:
    """A rich progress bar on a terminal (records, rate, ETA by bytes read); log lines otherwise."""

    def __init__(self, source: IO[bytes] | None, size: int) -> None:
        self._source = source
        self._size = size
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar: Any = None
        self._task: Any = None
        self.elapsed = 0.0

    def __enter__(self) -> _Progress:
        self._started = time.monotonic()
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]importing"),
                BarColumn(),
                TextColumn("{task.fields[records]} records"),
                TextColumn("{task.fields[rate]}/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("import", total=self._size or None, records=0, rate=0)
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self._started
        if self._bar is not None:
            self._bar.stop()

    def update(self, run: ImportRun) -> None:
        now = time.monotonic()
        rate = int(run.total / max(now - self._started, 1e-6))
        done = self._position()
        if self._bar is not None:
            self._bar.update(self._task, completed=done, records=run.total, rate=rate)
        elif now - self._last_log >= 2.0:
            self._last_log = now
            log.info(
                "import progress: %d records (%d imported, %d skipped, %d failed), %d/s",
                run.total,
                run.imported,
                run.skipped,
                run.failed,
                rate,
            )

    def _position(self) -> int:
        if self._source is None or not isinstance(self._source, io.BufferedReader):
            return 0
        try:
            return self._source.tell()
        except (OSError, ValueError):
            return 0
