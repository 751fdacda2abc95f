"""Reading request bodies: JSON only, bounded, validated into clear 422 errors."""

from __future__ import annotations

import json
import uuid
from enum import Enum
from typing import Any, TypeVar

from aiohttp import web
from email_validator import EmailNotValidError, validate_email

from identity.domain.emails import Email
from identity.domain.errors import InvalidEmailError
from identity.entrypoints.http.problems import FieldError, Problem, validation_problem

E = TypeVar("E", bound=Enum)

MAX_EMAIL_LENGTH = 320


def normalise_email(raw: str) -> Email:
    """Trimmed, domain lower-cased and IDNA-encoded; syntax from a maintained validator."""
    try:
        info = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmailError(str(error)) from None
    domain = (info.ascii_domain or info.domain).lower()
    return Email(f"{info.local_part}@{domain}")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Problem(
            415,
            "unsupported_media_type",
            "Unsupported media type",
            "Send the body as application/json.",
        )
    raw = await request.read()  # bounded by the app's client_max_size (64 KiB)
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise Problem(
            400, "malformed_json", "Malformed JSON", "The request body is not valid JSON."
        ) from None
    if not isinstance(data, dict):
        raise validation_problem([FieldError("", "the body must be a JSON object")])
    return data


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Body:
    """Collects every field error of one body, then raises them together."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self._errors: list[FieldError] = []

    def fail(self, field: str, message: str) -> None:
        self._errors.append(FieldError(field, message))

    _fail = fail

    def text(self, field: str, *, max_length: int = 1024) -> str:
        value = self._data.get(field)
        if value is None:
            self._fail(field, "field required")
            return ""
        if not isinstance(value, str):
            self._fail(field, "must be a string")
            return ""
        if "\x00" in value or not _encodable(value):
            self._fail(field, "must be text without NUL characters or unpaired surrogates")
            return ""
        if not value:
            self._fail(field, "must not be empty")
        elif len(value) > max_length:
            self._fail(field, f"must be at most {max_length} characters")
        return value

    def optional_text(self, field: str, *, max_length: int = 1024) -> str | None:
        if self._data.get(field) is None:
            return None
        return self.text(field, max_length=max_length) or None

    def password(self, field: str) -> str:
        # Length rules are the use case's; this bound only protects the hasher.
        return self.text(field, max_length=4096)

    def optional_password(self, field: str) -> str | None:
        if self._data.get(field) is None:
            return None
        return self.password(field)

    def email(self, field: str = "email") -> Email:
        errors_before = len(self._errors)
        raw = self.text(field, max_length=MAX_EMAIL_LENGTH)
        if not raw or len(self._errors) > errors_before:
            return Email("invalid@invalid")
        try:
            return normalise_email(raw)
        except InvalidEmailError:
            self._fail(field, "not a valid email address")
            return Email("invalid@invalid")

    def code(self, field: str = "otp_code") -> str:
        raw = self.text(field, max_length=16).strip()
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) == 6):
            self._fail(field, "must be 6 digits")
        return raw

    def choice(self, field: str, enum: type[E], allowed: tuple[E, ...] | None = None) -> E:
        raw = self.text(field, max_length=64)
        options = allowed or tuple(enum)
        for option in options:
            if option.value == raw:
                return option
        if raw:
            names = ", ".join(str(option.value) for option in options)
            self._fail(field, f"must be one of: {names}")
        return options[0]

    def digits(self, field: str, length: int) -> str:
        raw = self.text(field, max_length=16).strip()
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) == length):
            self._fail(field, f"must be {length} digits")
        return raw

    def boolean(self, field: str) -> bool:
        value = self._data.get(field)
        # Query strings carry text; JSON bodies carry true/false.
        if isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            self._fail(field, "must be true or false")
            return False
        return value

    def integer(self, field: str, *, minimum: int, maximum: int) -> int:
        value = self._data.get(field)
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            self._fail(field, "must be an integer")
            return minimum
        if not minimum <= value <= maximum:
            self._fail(field, f"must be between {minimum} and {maximum}")
        return value

    def uuid(self, field: str) -> uuid.UUID:
        raw = self.text(field, max_length=64)
        try:
            return uuid.UUID(raw)
        except ValueError:
            if raw:
                self._fail(field, "must be a UUID")
            return uuid.UUID(int=0)

    def mapping(self, field: str, *, max_items: int) -> dict[str, Any]:
        """A JSON object of string keys whose values are scalars or lists of strings."""
        value = self._data.get(field)
        if not isinstance(value, dict):
            self._fail(field, "must be an object")
            return {}
        if len(value) > max_items:
            self._fail(field, f"must have at most {max_items} entries")
            return {}
        for key, item in value.items():
            scalar = item is None or isinstance(item, (str, int, float, bool))
            strings = isinstance(item, list) and all(isinstance(x, str) for x in item)
            if len(key) > 64 or not (scalar or strings):
                self._fail(field, f"entry {key[:64]!r} must be a string, number, list or null")
                return {}
        return dict(value)

    def string_list(
        self, field: str, *, choices: tuple[str, ...] | None, max_items: int, max_length: int
    ) -> list[str]:
        value = self._data.get(field)
        if not isinstance(value, list):
            self._fail(field, "must be a list of strings")
            return []
        if len(value) > max_items:
            self._fail(field, f"must have at most {max_items} items")
            return []
        for item in value:
            if not isinstance(item, str) or not item or len(item) > max_length:
                self._fail(field, f"each item must be a string of 1 to {max_length} characters")
                return []
            if choices is not None and item not in choices:
                self._fail(field, f"unknown value {item[:64]!r}; one of: {', '.join(choices)}")
                return []
        return list(dict.fromkeys(value))

    def check(self) -> None:
        if self._errors:
            raise validation_problem(self._errors)


async def read_body(request: web.Request) -> Body:
    return Body(await read_json_object(request))
