"""Import formats: one reader per source system, each turning records into ``ImportedUser``.

A reader never fails a whole file for one record: a record it cannot read
becomes a ``Refusal`` with its 1-based position (the line of an NDJSON file,
the element of a JSON array) and the reason. Files are read as streams, one
record at a time, each at most ``MAX_RECORD_BYTES``.

Accepted layouts (see docs/import-formats.md):

- ``identity``: NDJSON, this service's own export (docs/identity-users.schema.json);
- ``auth0``: Auth0's bulk-import JSON array, or its export job's NDJSON;
- ``supabase``: rows of ``auth.users`` as NDJSON or a JSON array (``row_to_json``);
- ``firebase``: ``firebase auth:export --format=json`` (``{"users": [...]}``), with
  the project's hash parameters (``--hash-config``);
- ``kratos``: Ory Kratos identities as NDJSON or a JSON array (admin API shape);
- ``seed``: rows of the reference FastAPI service's ``users`` table (``seed_rows``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import IO, Any, Final

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from identity.adapters.foreign_hashes import FirebaseHashConfig
from identity.domain.emails import Email
from identity.domain.errors import DomainError
from identity.domain.imports import ImportedUser, LinkedSubject, Refusal

MAX_RECORD_BYTES: Final = 1024 * 1024
_CHUNK: Final = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"
MAX_NAME_LENGTH: Final = 200
FORMATS: Final = ("identity", "auth0", "supabase", "firebase", "kratos")

# An address this simple needs no validator to be normalised (the domain is
# only lower-cased); anything else goes to email_validator. It saves ~100 µs
# per record, most of a million-user import.
_PLAIN_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
_SPECIAL = tuple("." + name for name in SPECIAL_USE_DOMAIN_NAMES)

_PROVIDERS: Final = {
    "google": "google",
    "google.com": "google",
    "google-oauth2": "google",
    "github": "github",
    "github.com": "github",
}


class RecordError(ValueError):
    """Why one record cannot be imported."""


def normalise_email(raw: object) -> Email:
    if not isinstance(raw, str) or not raw.strip():
        raise RecordError("the record has no email address")
    text = raw.strip()
    if len(text) > 254:
        raise RecordError("the email address is too long")
    if _PLAIN_EMAIL.match(text) and len(text.partition("@")[0]) <= 64:
        local, _, domain = text.rpartition("@")
        domain = domain.lower()
        if not domain.endswith(_SPECIAL) and domain not in SPECIAL_USE_DOMAIN_NAMES:
            return Email(f"{local}@{domain}")
    try:
        info = validate_email(text, check_deliverability=False)
    except EmailNotValidError as error:
        raise RecordError(f"the email address is invalid: {error}") from None
    return Email(f"{info.local_part}@{(info.ascii_domain or info.domain).lower()}")


def _text(value: object, what: str, limit: int = MAX_NAME_LENGTH) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what} must be a string")
    return value[:limit]


def _bool(value: object, what: str, default: bool = False) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RecordError(f"{what} must be true or false")
    return value


def _time(value: object, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise RecordError(f"{what} is not an ISO 8601 time") from None
    else:
        raise RecordError(f"{what} is not a time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _object(value: object, what: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):  # Firebase's customAttributes is a JSON string
        try:
            value = json.loads(value)
        except ValueError:
            raise RecordError(f"{what} is not a JSON object") from None
    if not isinstance(value, dict):
        raise RecordError(f"{what} must be a JSON object")
    return value


def _uuid(value: object, what: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise RecordError(f"{what} is not a UUID") from None


def _subject(provider: object, subject: object) -> LinkedSubject:
    if not isinstance(provider, str) or not provider or not isinstance(subject, (str, int)):
        raise RecordError("a linked identity needs a provider and a subject")
    name = _PROVIDERS.get(provider.lower(), provider.lower())
    subject_text = str(subject)
    if len(name) > 32 or not subject_text or len(subject_text) > 255:
        raise RecordError("a linked identity's provider or subject is too long")
    return LinkedSubject(name, subject_text)


def _hash(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError("the password hash must be a string")
    return value


# --- one mapper per format: a decoded JSON record (or a row) to an ImportedUser ---


def from_identity(record: Mapping[str, Any], line: int) -> ImportedUser:
    identities = record.get("identities") or []
    if not isinstance(identities, list):
        raise RecordError("identities must be a list")
    totp = record.get("totp")
    secret = None
    if totp is not None:
        if not isinstance(totp, dict) or not isinstance(totp.get("secret"), str):
            raise RecordError("totp must be an object with a base32 secret")
        secret = totp["secret"].strip().upper()
        try:
            base64.b32decode(secret + "=" * (-len(secret) % 8))
        except (binascii.Error, ValueError):
            raise RecordError("the TOTP secret is not base32") from None
    return ImportedUser(
        line=line,
        email=normalise_email(record.get("email")),
        verified=_bool(record.get("email_verified"), "email_verified"),
        full_name=_text(record.get("full_name"), "full_name"),
        created_at=_time(record.get("created_at"), "created_at"),
        disabled=_bool(record.get("disabled"), "disabled"),
        password_hash=_hash(record.get("password_hash")),
        identities=tuple(
            _subject(item.get("provider"), item.get("subject"))
            if isinstance(item, dict)
            else _subject(None, None)
            for item in identities
        )
        if identities
        else (),
        app_metadata=_object(record.get("app_metadata"), "app_metadata"),
        user_metadata=_object(record.get("user_metadata"), "user_metadata"),
        id=_uuid(record.get("id"), "id"),
        totp_secret=secret,
    )


_AUTH0_HASHES: Final = {"bcrypt", "argon2", "pbkdf2"}


def from_auth0(record: Mapping[str, Any], line: int) -> ImportedUser:
    password_hash = _hash(record.get("password_hash"))
    custom = record.get("custom_password_hash")
    if custom is not None:
        if not isinstance(custom, dict) or not isinstance(custom.get("hash"), dict):
            raise RecordError("custom_password_hash must be an object with a hash")
        algorithm = str(custom.get("algorithm", "")).lower()
        if algorithm not in _AUTH0_HASHES:
            raise RecordError(f"the hash algorithm {algorithm!r} is not supported")
        if custom.get("salt") is not None:
            raise RecordError("a separately salted custom_password_hash is not supported")
        password_hash = _hash(custom["hash"].get("value"))
    name = _text(record.get("name"), "name")
    if name is None and (record.get("given_name") or record.get("family_name")):
        parts = (record.get("given_name"), record.get("family_name"))
        name = _text(" ".join(str(p) for p in parts if p), "name")
    identities = []
    for item in record.get("identities") or []:
        if isinstance(item, dict) and item.get("provider") not in (None, "auth0"):
            identities.append(_subject(item.get("provider"), item.get("user_id")))
    return ImportedUser(
        line=line,
        email=normalise_email(record.get("email")),
        verified=_bool(record.get("email_verified"), "email_verified"),
        full_name=name,
        created_at=_time(record.get("created_at"), "created_at"),
        disabled=_bool(record.get("blocked"), "blocked"),
        password_hash=password_hash,
        identities=tuple(identities),
        app_metadata=_object(record.get("app_metadata"), "app_metadata"),
        user_metadata=_object(record.get("user_metadata"), "user_metadata"),
    )


def from_supabase(record: Mapping[str, Any], line: int, now: datetime) -> ImportedUser:
    if record.get("deleted_at"):
        raise RecordError("the user was deleted in the source")
    user_meta = _object(record.get("raw_user_meta_data"), "raw_user_meta_data")
    name = None
    if user_meta:
        name = _text(user_meta.get("full_name") or user_meta.get("name"), "full_name")
    banned = _time(record.get("banned_until"), "banned_until")
    identities = []
    for item in record.get("identities") or []:
        if isinstance(item, dict) and item.get("provider") not in (None, "email"):
            subject = item.get("provider_id") or (item.get("identity_data") or {}).get("sub")
            identities.append(_subject(item.get("provider"), subject))
    return ImportedUser(
        line=line,
        email=normalise_email(record.get("email")),
        verified=bool(record.get("email_confirmed_at") or record.get("confirmed_at")),
        full_name=name,
        created_at=_time(record.get("created_at"), "created_at"),
        disabled=banned is not None and banned > now,
        password_hash=_hash(record.get("encrypted_password")),
        identities=tuple(identities),
        app_metadata=_object(record.get("raw_app_meta_data"), "raw_app_meta_data"),
        user_metadata=user_meta,
        id=_uuid(record.get("id"), "id"),
    )


def from_firebase(
    record: Mapping[str, Any], line: int, config: FirebaseHashConfig | None
) -> ImportedUser:
    password_hash = None
    if record.get("passwordHash"):
        if config is None:
            raise RecordError("a Firebase hash needs the project's parameters (--hash-config)")
        salt, digest = record.get("salt"), record.get("passwordHash")
        if not isinstance(salt, str) or not isinstance(digest, str):
            raise RecordError("passwordHash and salt must be base64 strings")
        password_hash = config.stored_hash(salt, digest)
    created = record.get("createdAt")
    created_at = None
    if created is not None:
        try:
            created_at = datetime.fromtimestamp(int(created) / 1000, UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            raise RecordError("createdAt is not a time in milliseconds") from None
    identities = []
    for item in record.get("providerUserInfo") or []:
        if isinstance(item, dict) and item.get("providerId") not in (None, "password"):
            identities.append(_subject(item.get("providerId"), item.get("rawId")))
    return ImportedUser(
        line=line,
        email=normalise_email(record.get("email")),
        verified=_bool(record.get("emailVerified"), "emailVerified"),
        full_name=_text(record.get("displayName"), "displayName"),
        created_at=created_at,
        disabled=_bool(record.get("disabled"), "disabled"),
        password_hash=password_hash,
        identities=tuple(identities),
        app_metadata=_object(record.get("customAttributes"), "customAttributes"),
    )


def from_kratos(record: Mapping[str, Any], line: int) -> ImportedUser:
    traits = record.get("traits")
    if not isinstance(traits, dict):
        raise RecordError("the identity has no traits")
    email = normalise_email(traits.get("email"))
    verified = False
    for address in record.get("verifiable_addresses") or []:
        if isinstance(address, dict) and isinstance(address.get("value"), str):
            if address["value"].strip().casefold() == email.key and address.get("verified"):
                verified = True
    name = traits.get("name")
    if isinstance(name, dict):
        name = " ".join(str(name[k]) for k in ("first", "last") if name.get(k))
    credentials = record.get("credentials") or {}
    if not isinstance(credentials, dict):
        raise RecordError("credentials must be an object")
    password = (credentials.get("password") or {}).get("config") or {}
    identities = []
    oidc = (credentials.get("oidc") or {}).get("config") or {}
    for item in oidc.get("providers") or []:
        if isinstance(item, dict):
            identities.append(_subject(item.get("provider"), item.get("subject")))
    state = record.get("state", "active")
    return ImportedUser(
        line=line,
        email=email,
        verified=verified,
        full_name=_text(name, "traits.name"),
        created_at=_time(record.get("created_at"), "created_at"),
        disabled=state != "active",
        password_hash=_hash(password.get("hashed_password")),
        identities=tuple(identities),
        app_metadata=_object(record.get("metadata_admin"), "metadata_admin"),
        user_metadata=_object(record.get("metadata_public"), "metadata_public"),
        id=_uuid(record.get("id"), "id"),
    )


def from_seed(row: Mapping[str, Any], line: int) -> ImportedUser:
    """A row of the reference service's ``users`` table (SQLAlchemy/FastAPI-Users layout)."""

    def first(*names: str) -> Any:
        for name in names:
            if name in row and row[name] is not None:
                return row[name]
        return None

    raw_id = first("id")
    return ImportedUser(
        line=line,
        email=normalise_email(first("email")),
        verified=bool(first("is_verified", "email_verified", "verified")),
        full_name=_text(first("full_name", "name"), "full_name"),
        created_at=_time(first("created_at"), "created_at"),
        disabled=not bool(first("is_active") if first("is_active") is not None else True),
        password_hash=_hash(first("hashed_password", "password_hash", "password")),
        id=_uuid(raw_id, "id") if isinstance(raw_id, (str, uuid.UUID)) else None,
    )


# --- reading records out of a byte stream ---------------------------------------


def _decode(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("the record is not UTF-8") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError("the record is nested too deeply") from None
    except ValueError:
        raise RecordError("the record is not valid JSON (truncated?)") from None


def ndjson_records(stream: IO[bytes]) -> Iterator[tuple[int, Any]]:
    """``(line, decoded JSON or RecordError)`` per non-blank line; a line over the
    limit is skipped in chunks, never held whole."""
    line = 0
    while True:
        raw = stream.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return
        line += 1
        if line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]  # a UTF-8 byte order mark, as some editors write
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            while True:
                rest = stream.readline(_CHUNK)
                if not rest or rest.endswith(b"\n"):
                    break
            yield line, RecordError(f"the record is longer than {MAX_RECORD_BYTES} bytes")
            continue
        if not raw.strip():
            continue
        try:
            yield line, _decode(raw)
        except RecordError as error:
            yield line, error


def json_array_records(stream: IO[bytes], key: str | None = None) -> Iterator[tuple[int, Any]]:
    """Elements of a JSON array (or of ``document[key]``), one at a time.

    A broken element cannot be stepped over (where it ends is unknown): it is
    refused and so is the rest, in one refusal."""
    decoder = json.JSONDecoder()
    reader = _TextChunks(stream)
    buffer = reader.read()
    position = 0
    if key is not None:
        match = re.match(r'\s*\{\s*"' + re.escape(key) + r'"\s*:\s*\[', buffer)
        while match is None and len(buffer) < 4096 and not reader.eof:
            buffer += reader.read()
            match = re.match(r'\s*\{\s*"' + re.escape(key) + r'"\s*:\s*\[', buffer)
        if match is None:
            yield 1, RecordError(f'the document is not an object with a "{key}" array first')
            return
        index = match.end()
    else:
        stripped = buffer.lstrip()
        if not stripped.startswith("["):
            yield 1, RecordError("the document is not a JSON array")
            return
        index = len(buffer) - len(stripped) + 1
    while True:
        # Skip whitespace and the comma between elements.
        while True:
            while index < len(buffer) and buffer[index] in " \t\r\n,":
                index += 1
            if index < len(buffer) or reader.eof:
                break
            buffer, index = buffer[index:] + reader.read(), 0
        if index >= len(buffer):
            if position or key is None:
                yield position + 1, RecordError("the document ends before its closing bracket")
            return
        if buffer[index] == "]":
            return
        position += 1
        while True:
            try:
                value, end = decoder.raw_decode(buffer, index)
            except json.JSONDecodeError:
                if reader.eof or len(buffer) - index > MAX_RECORD_BYTES:
                    yield (
                        position,
                        RecordError(
                            "the record is invalid or too long; the rest of the file is unread"
                        ),
                    )
                    return
                buffer, index = buffer[index:] + reader.read(), 0
                continue
            except RecursionError:
                yield position, RecordError("the record is nested too deeply")
                return
            if end - index > MAX_RECORD_BYTES:
                message = f"the record is longer than {MAX_RECORD_BYTES} bytes"
                yield position, RecordError(message)
            else:
                yield position, value
            index = end
            break
        if index > _CHUNK:
            buffer, index = buffer[index:], 0


class _TextChunks:
    """UTF-8 text out of a byte stream, never splitting a character across chunks."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._pending = b""
        self.eof = False
        self._first = True

    def read(self) -> str:
        if self.eof:
            return ""
        data = self._pending + self._stream.read(_CHUNK)
        if self._first:
            self._first = False
            data = data.removeprefix(_BOM)
        if len(data) == len(self._pending):
            self.eof = True
            data, self._pending = self._pending, b""
            return data.decode("utf-8", "replace")
        cut = len(data)
        while cut > 0 and cut > len(data) - 4 and (data[cut - 1] & 0xC0) == 0x80:
            cut -= 1
        if cut > 0 and data[cut - 1] >= 0xC0:
            cut -= 1
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", "replace")


def _document_records(stream: IO[bytes], key: str | None) -> Iterator[tuple[int, Any]]:
    """NDJSON, or one JSON document (array, or ``{key: [...]}``): told by the first byte."""
    head = stream.peek(64)[:64] if hasattr(stream, "peek") else b""
    first = head.removeprefix(_BOM).lstrip()[:1]
    if first == b"[" or (key is not None and first == b"{" and f'"{key}"'.encode() in head):
        return json_array_records(stream, key if first == b"{" else None)
    return ndjson_records(stream)


def read_file(
    stream: IO[bytes],
    format: str,
    *,
    hash_config: FirebaseHashConfig | None = None,
    now: datetime | None = None,
) -> Iterator[ImportedUser | Refusal]:
    """Every record of ``stream`` (a buffered binary file) in ``format``, in order."""
    moment = now or datetime.now(UTC)
    mappers: dict[str, Callable[[Mapping[str, Any], int], ImportedUser]] = {
        "identity": from_identity,
        "auth0": from_auth0,
        "supabase": lambda record, line: from_supabase(record, line, moment),
        "firebase": lambda record, line: from_firebase(record, line, hash_config),
        "kratos": from_kratos,
    }
    if format not in mappers:
        raise ValueError(f"unknown format {format!r}; one of: {', '.join(FORMATS)}")
    mapper = mappers[format]
    if format == "identity":
        records = ndjson_records(stream)
    else:
        records = _document_records(stream, "users" if format == "firebase" else None)
    for line, value in records:
        if isinstance(value, RecordError):
            yield Refusal(line, str(value))
            continue
        if not isinstance(value, dict):
            yield Refusal(line, "the record is not a JSON object")
            continue
        try:
            yield mapper(value, line)
        except (RecordError, DomainError) as error:
            yield Refusal(line, str(error))
        except (ValueError, TypeError, AttributeError) as error:
            # A field of an unexpected type deep inside: refused, never a crash.
            yield Refusal(line, f"the record could not be read ({type(error).__name__})")


async def as_async(
    records: Iterator[ImportedUser | Refusal], chunk: int = 500
) -> AsyncIterator[ImportedUser | Refusal]:
    """``records`` read ``chunk`` at a time in a worker thread: the caller's loop is free
    meanwhile (it serves sign-ins, or writes the previous batch while this one is read)."""

    def take() -> list[ImportedUser | Refusal]:
        return list(itertools.islice(records, chunk))

    while batch := await asyncio.to_thread(take):
        for record in batch:
            yield record


async def ndjson_chunks(
    users: AsyncIterable[ImportedUser], lines_per_chunk: int = 500
) -> AsyncIterator[str]:
    """``users`` as NDJSON text of the ``identity`` format, many lines per chunk."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    chunk: list[str] = []
    async for user in users:
        chunk.append(dumps(to_identity(user)) + "\n")
        if len(chunk) >= lines_per_chunk:
            yield "".join(chunk)
            chunk = []
    if chunk:
        yield "".join(chunk)


def to_identity(user: ImportedUser) -> dict[str, Any]:
    """One user as a record of the ``identity`` format (what ``from_identity`` reads)."""
    record: dict[str, Any] = {
        "id": str(user.id) if user.id else None,
        "email": user.email.value,
        "email_verified": user.verified,
        "full_name": user.full_name,
        "created_at": user.created_at.isoformat() if user.created_at else None,
        "disabled": user.disabled,
        "app_metadata": user.app_metadata,
        "user_metadata": user.user_metadata,
    }
    if user.password_hash is not None:
        record["password_hash"] = user.password_hash
    if user.identities:
        record["identities"] = [
            {"provider": s.provider, "subject": s.subject} for s in user.identities
        ]
    if user.totp_secret is not None:
        record["totp"] = {"secret": user.totp_secret}
    return record
