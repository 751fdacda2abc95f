"""Users moved in from another system, and the record of one import run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

import attrs

from identity.domain.emails import Email

MAX_REPORTED_ERRORS = 100


class OnConflict(StrEnum):
    """What a record whose email (or id) is already taken in the tenant does."""

    SKIP = "skip"  # counted as skipped; the stored user is left alone (the default)
    UPDATE = "update"  # the stored user takes the record's fields
    FAIL = "fail"  # the record is refused (reported), the run goes on


class ImportState(StrEnum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@attrs.frozen
class LinkedSubject:
    """A provider sign-in carried over: ``google``, ``github`` or a named OIDC provider."""

    provider: str
    subject: str


@attrs.frozen
class ImportedUser:
    """One readable record of an import file, already normalised by its format's reader.

    ``password_hash`` is in a format the hasher can check (``PasswordHasher.refusal``
    is None for it); the reader turns vendor layouts into it.
    """

    line: int
    email: Email
    verified: bool = False
    full_name: str | None = None
    created_at: datetime | None = None
    disabled: bool = False
    password_hash: str | None = attrs.field(default=None, repr=False)
    identities: tuple[LinkedSubject, ...] = ()
    app_metadata: Mapping[str, Any] | None = None
    user_metadata: Mapping[str, Any] | None = None
    id: UUID | None = None  # kept when the source is an identity export
    totp_secret: str | None = attrs.field(default=None, repr=False)  # base32, confirmed


@attrs.frozen
class Refusal:
    """A record that is not imported: its 1-based position in the source and why."""

    line: int
    reason: str


@attrs.define
class ImportRun:
    """Progress of one run, readable while it goes on (``GET /admin/imports/{id}``)."""

    id: UUID
    tenant_id: UUID
    started_at: datetime
    state: ImportState = ImportState.RUNNING
    total: int = 0
    imported: int = 0
    skipped: int = 0
    failed: int = 0
    errors: list[Refusal] = attrs.field(factory=list)
    finished_at: datetime | None = None

    def count(self, imported: int, skipped: int, refusals: list[Refusal]) -> None:
        self.imported += imported
        self.skipped += skipped
        self.failed += len(refusals)
        self.total += imported + skipped + len(refusals)
        room = MAX_REPORTED_ERRORS - len(self.errors)
        if room > 0:
            self.errors.extend(refusals[:room])

    def finish(self, now: datetime, *, failed: bool = False) -> None:
        self.state = ImportState.FAILED if failed else ImportState.DONE
        self.finished_at = now
