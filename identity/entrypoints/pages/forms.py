"""Reading a page's form: the one place a form body is parsed.

A form is read by the API's declared parser (``declare.parse``) into a request
class of ``requests.py``, so a field follows the same rules on a page and on
the API. Only
``application/x-www-form-urlencoded`` is read (the pages post nothing else);
the body is bounded by the app's 64 KiB limit, must be UTF-8, and may carry
at most ``MAX_FIELDS`` fields.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import parse_qsl

import attrs
from aiohttp import web

from identity.entrypoints.http import declare as d
from identity.entrypoints.http.problems import Problem

MAX_FIELDS = 32
T = TypeVar("T")


class Form:
    """The fields of a posted form, as text; blank optional fields read as absent."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def parse(self, cls: type[T]) -> T:
        """The form read into ``cls`` by the API's parser (422 ``Problem`` naming each bad
        field). A blank field counts as absent: a form sends every input, filled or not."""
        names = {field.name for field in attrs.fields(cls)}  # type: ignore[arg-type]
        data = {
            name: value for name, value in self.fields.items() if name in names and value.strip()
        }
        return d.parse(cls, data)


async def read_form(request: web.Request) -> Form:
    if request.content_type != "application/x-www-form-urlencoded":
        raise Problem(415, "unsupported_media_type", "Unsupported media type")
    raw = await request.read()  # bounded by client_max_size
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "malformed_form", "Malformed form") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        fields.setdefault(name, value)  # the first of repeated fields counts
    return Form(fields)
