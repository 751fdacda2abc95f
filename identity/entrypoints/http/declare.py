"""Declared endpoints: one declaration gives the route, the parsing and the OpenAPI entry.

A request (a JSON body, a query string, a form) is an attrs class. Each field's
annotation says what it holds; its ``Annotated`` metadata (``d.Text``,
``d.Digits``, ``d.Address``, ``d.Choice``, ``d.Integer``, ``d.Flag``, ``d.Id``,
``d.Strings``, ``d.Entries``) says how it is bounded and what the document says
of it. One cattrs converter reads every request class, and every bad field is
reported at once (422 ``validation_error``). A field with a default is
optional; ``null`` counts as absent. A response view is an attrs class whose
annotations say its shape (``d.out`` adds a description)::

    from typing import Annotated
    from identity.entrypoints.http import declare as d

    @attrs.frozen
    class NewUser:                                    # a JSON body
        email: d.EmailAddress
        full_name: Annotated[str, d.Text("the display name", max_length=200)] | None = None
        verified: Annotated[bool, d.Flag("email already verified")] = False

    @attrs.frozen
    class UserQuery:                                  # a query string (?email=&limit=)
        email: Annotated[Email, d.Address("only this address")] | None = None
        limit: d.Limit = d.DEFAULT_LIMIT
        cursor: d.Cursor | None = None

    @attrs.frozen
    class UserView:                                   # an answer
        id: UUID
        email: str = d.out("the normalised address")

    endpoints = d.Endpoints(tag="admin")              # found by the app (see ``collect``)

    @endpoints.post("/admin/users", summary="Create a user", body=NewUser, ok=UserView,
                    status=201, auth=d.api_key(Scope.USERS_WRITE), errors=("email_taken",))
    @inject
    async def create_user(request, body: NewUser,
                          use_case=Provide[...]) -> UserView: ...

    @endpoints.get("/admin/users/{user_id}", summary="Read a user", ok=UserView,
                   path_params=(d.path_id("user_id", "the user's id"),), auth=READ)
    async def get_user(request, user_id: UUID) -> UserView: ...   # a path parameter

A form (``application/x-www-form-urlencoded``, e.g. a page's ``<form>``) is the
same kind of class: ``forms=True`` accepts it beside JSON, ``document=False``
keeps a page out of the OpenAPI document. ``parse(NewUser, data)`` reads any
mapping the same way (a page catches the ``Problem`` and shows its ``errors``).

The handler receives ``body=`` / ``query=`` / one keyword per path parameter,
already validated, after the auth has run. It returns a view (serialised with
the declared status), ``None`` (204) or a ready ``web.StreamResponse``. The
declaration lists the problem codes the handler itself can answer
(``errors=``, from ``error_codes.py``); those of the auth, the body, the query,
the path, the tenant, the rate limit and the database are added for it
(``limited=False``/``storage=False`` for endpoints without the last two).
Other answers are ``answers=(d.Answer(503, ...),)``; a success body that is not
JSON is ``content="text/html"``.

The app collects every ``Endpoints`` of the handler modules (``collect``): a
new module needs no registration. ``openapi.py`` turns them into paths and
component schemas, so the document cannot drift from what the handlers read;
two classes with one schema name, one route or operation id declared twice, or
a request field without a rule stop the start.

A handler's ``Provide[<Container>.name]`` default (``...name.provider``: the
provider itself) is read per request from the container of the request's app, so
apps with different containers in one process stay apart; ``collect(package,
Container)`` resolves the names once, and a marker naming none stops the start.
Nothing is wired: ``@inject`` only marks such a handler.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import importlib
import inspect
import pkgutil
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from types import ModuleType
from typing import Annotated, Any, TypeVar

import attrs
import cattrs
from aiohttp import web
from cattrs.errors import ClassValidationError
from dependency_injector import containers, wiring
from dependency_injector import providers as di_providers

from identity.adapters.email_syntax import normalise_email
from identity.application.pagination import DEFAULT_LIMIT, MAX_LIMIT
from identity.application.ports import Position
from identity.domain.api_keys import Scope
from identity.domain.emails import MAX_EMAIL_LENGTH, Email
from identity.domain.errors import InvalidEmailError
from identity.domain.oauth import OAuthProtocolError
from identity.domain.tenants import validate_slug
from identity.entrypoints.http.bodies import read_json_object
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.http.oauth_errors import oauth_error_response, read_oauth_form
from identity.entrypoints.http.pagination import MAX_CURSOR_LENGTH, decode_cursor
from identity.entrypoints.http.principals import (
    authenticated,
    authenticated_service,
    service,
    user,
)
from identity.entrypoints.http.problems import FieldError, Problem, validation_problem

__all__ = [
    "BEARER",
    "DEFAULT_LIMIT",
    "Address",
    "Answer",
    "Choice",
    "Cursor",
    "Digits",
    "EmailAddress",
    "Endpoints",
    "Entries",
    "Flag",
    "Id",
    "Integer",
    "Limit",
    "NewPassword",
    "PageQuery",
    "Password",
    "Strings",
    "Text",
    "api_key",
    "collect",
    "out",
    "parse",
    "path_id",
    "path_slug",
    "path_text",
    "service",
    "user",
]

Schema = dict[str, Any]
T = TypeVar("T")
_OUT = "identity.out"
_OMIT = "identity.omit_if_none"
_EXTRA = "identity.schema"

# --- request fields ------------------------------------------------------------------


class Invalid(ValueError):
    """A request value broke its field's rule; the message is shown to the client."""


def _text(value: Any, max_length: int, *, empty: bool = False) -> str:
    if value is None:
        raise Invalid("field required")
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if "\x00" in value or not _encodable(value):
        raise Invalid("must be text without NUL characters or unpaired surrogates")
    if not value and not empty:
        raise Invalid("must not be empty")
    if len(value) > max_length:
        raise Invalid(f"must be at most {max_length} characters")
    return value


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _described(schema: Schema, description: str | None) -> Schema:
    return {**schema, "description": description} if description else schema


@attrs.frozen
class Rule:
    """How a request field is read and what the document says of it.

    Put one in the field's ``Annotated`` metadata. ``base`` is the annotated
    type without ``None`` (an enum's members, for ``Choice``).
    """

    description: str | None = None

    def reader(self, base: Any) -> Callable[[Any], Any]:
        raise NotImplementedError

    def schema(self, base: Any) -> Schema:
        raise NotImplementedError


@attrs.frozen
class Text(Rule):
    """A non-empty string of at most ``max_length`` characters (``empty=True``: may be "").

    ``pattern`` and ``format`` are for the document; the use case enforces them.
    """

    max_length: int = 1024
    pattern: str | None = None
    format: str | None = None
    empty: bool = False

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return functools.partial(_text, max_length=self.max_length, empty=self.empty)

    def schema(self, base: Any) -> Schema:
        schema: Schema = {
            "type": "string",
            "minLength": 0 if self.empty else 1,
            "maxLength": self.max_length,
        }
        if self.pattern:
            schema["pattern"] = self.pattern
        if self.format:
            schema["format"] = self.format
        return _described(schema, self.description)


@attrs.frozen
class Address(Rule):
    """An email address: the handler gets it normalised (``Email``)."""

    description: str | None = "an email address; normalised before any lookup"

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return _email

    def schema(self, base: Any) -> Schema:
        schema = {"type": "string", "minLength": 1, "maxLength": MAX_EMAIL_LENGTH}
        return _described({**schema, "format": "email"}, self.description)


def _email(value: Any) -> Email:
    raw = _text(value, MAX_EMAIL_LENGTH)
    try:
        return normalise_email(raw)
    except InvalidEmailError:
        raise Invalid("not a valid email address") from None


@attrs.frozen
class Password(Rule):
    """A password as typed: its length rules are the use case's; this bound protects the hasher."""

    description: str | None = "a password"

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return functools.partial(_text, max_length=4096)

    def schema(self, base: Any) -> Schema:
        return _described({"type": "string", "minLength": 1, "maxLength": 4096}, self.description)


@attrs.frozen
class NewPassword(Password):
    """A password being set: the document states the policy the use case applies."""

    description: str | None = (
        "a new password: 8 to 256 characters, no composition rules; "
        "the most common passwords are refused (422)"
    )

    def schema(self, base: Any) -> Schema:
        return _described({"type": "string", "minLength": 8, "maxLength": 256}, self.description)


@attrs.frozen
class Digits(Rule):
    """``length`` ASCII digits, spaces around them ignored (a one-time code)."""

    length: int = 6

    def reader(self, base: Any) -> Callable[[Any], Any]:
        length = self.length

        def read(value: Any) -> str:
            raw = _text(value, 16).strip()
            if raw and not (raw.isascii() and raw.isdigit() and len(raw) == length):
                raise Invalid(f"must be {length} digits")
            return raw

        return read

    def schema(self, base: Any) -> Schema:
        pattern = rf"^\s*[0-9]{{{self.length}}}\s*$"
        schema = {"type": "string", "maxLength": 16, "pattern": pattern}
        return _described(schema, self.description)


@attrs.frozen
class Flag(Rule):
    """``true`` or ``false`` (the text ``"true"``/``"false"`` in a query or form)."""

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return _flag

    def schema(self, base: Any) -> Schema:
        return _described({"type": "boolean"}, self.description)


def _flag(value: Any) -> bool:
    if isinstance(value, str) and value in ("true", "false"):
        return value == "true"
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


@attrs.frozen
class Integer(Rule):
    """An integer from ``minimum`` to ``maximum`` (digits, in a query or form)."""

    minimum: int | None = None
    maximum: int | None = None

    def reader(self, base: Any) -> Callable[[Any], Any]:
        minimum, maximum = self.minimum, self.maximum

        def read(value: Any) -> int:
            if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool):
                raise Invalid("must be an integer")
            if (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum
            ):
                raise Invalid(f"must be between {minimum} and {maximum}")
            return value

        return read

    def schema(self, base: Any) -> Schema:
        schema: Schema = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return _described(schema, self.description)


@attrs.frozen
class Id(Rule):
    """A UUID (the handler gets a ``uuid.UUID``)."""

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return _uuid

    def schema(self, base: Any) -> Schema:
        return _described({"type": "string", "format": "uuid"}, self.description)


def _uuid(value: Any) -> uuid.UUID:
    raw = _text(value, 64)
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Invalid("must be a UUID") from None


@attrs.frozen
class Choice(Rule):
    """One of an enum's values (the handler gets the member); ``only`` narrows them."""

    only: tuple[enum.Enum, ...] = ()

    def options(self, base: Any) -> tuple[enum.Enum, ...]:
        if not (isinstance(base, type) and issubclass(base, enum.Enum)):
            raise TypeError(f"Choice needs an enum type, not {base!r}")
        return self.only or tuple(base)

    def reader(self, base: Any) -> Callable[[Any], Any]:
        by_value = {str(member.value): member for member in self.options(base)}
        refusal = f"must be one of: {', '.join(by_value)}"

        def read(value: Any) -> enum.Enum:
            raw = _text(value, 64)
            member = by_value.get(raw)
            if member is None:
                raise Invalid(refusal)
            return member

        return read

    def schema(self, base: Any) -> Schema:
        values = [str(member.value) for member in self.options(base)]
        return _described({"type": "string", "enum": values}, self.description)


@attrs.frozen
class Strings(Rule):
    """A list of strings, repeats dropped; ``choices`` limits the values."""

    choices: tuple[str, ...] | None = None
    max_items: int = 50
    max_length: int = 200

    def reader(self, base: Any) -> Callable[[Any], Any]:
        choices, max_items, max_length = self.choices, self.max_items, self.max_length

        def read(value: Any) -> list[str]:
            if not isinstance(value, list):
                raise Invalid("must be a list of strings")
            if len(value) > max_items:
                raise Invalid(f"must have at most {max_items} items")
            for item in value:
                if not isinstance(item, str) or not item or len(item) > max_length:
                    raise Invalid(f"each item must be a string of 1 to {max_length} characters")
                if choices is not None and item not in choices:
                    raise Invalid(f"unknown value {item[:64]!r}; one of: {', '.join(choices)}")
            return list(dict.fromkeys(value))

        return read

    def schema(self, base: Any) -> Schema:
        items: Schema = {"type": "string", "minLength": 1, "maxLength": self.max_length}
        if self.choices is not None:
            items = {"type": "string", "enum": list(self.choices)}
        schema = {"type": "array", "items": items, "maxItems": self.max_items}
        return _described(schema, self.description)


@attrs.frozen
class Entries(Rule):
    """A JSON object of string keys whose values are scalars or lists of strings."""

    max_items: int = 50

    def reader(self, base: Any) -> Callable[[Any], Any]:
        max_items = self.max_items

        def read(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise Invalid("must be an object")
            if len(value) > max_items:
                raise Invalid(f"must have at most {max_items} entries")
            for key, item in value.items():
                scalar = item is None or isinstance(item, (str, int, float, bool))
                strings = isinstance(item, list) and all(isinstance(x, str) for x in item)
                if len(key) > 64 or not (scalar or strings):
                    raise Invalid(f"entry {key[:64]!r} must be a string, number, list or null")
            return dict(value)

        return read

    def schema(self, base: Any) -> Schema:
        schema = {"type": "object", "maxProperties": self.max_items}
        return _described(schema, self.description)


@attrs.frozen
class _CursorRule(Rule):
    description: str | None = "opaque: the `next_cursor` of the previous page; absent for the first"

    def reader(self, base: Any) -> Callable[[Any], Any]:
        return _cursor

    def schema(self, base: Any) -> Schema:
        return _described({"type": "string", "maxLength": MAX_CURSOR_LENGTH}, self.description)


def _cursor(value: Any) -> Position:
    raw = _text(value, MAX_CURSOR_LENGTH)
    try:
        return decode_cursor(raw)
    except ValueError:
        raise Invalid("not a cursor this API gave out; pass `next_cursor` as it came") from None


# Ready-made fields.
EmailAddress = Annotated[Email, Address()]
Cursor = Annotated[Position, _CursorRule()]
"""The ``cursor`` of a paginated list: the handler gets a ``Position`` (or None, first page)."""
Limit = Annotated[int, Integer("items per page", minimum=1, maximum=MAX_LIMIT)]


@attrs.frozen
class PageQuery:
    """``?limit=&cursor=`` of a paginated list."""

    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | None = None


# --- reading requests ----------------------------------------------------------------


def _strip_none(hint: Any) -> tuple[Any, bool]:
    """``hint`` without ``None``, and whether it had it."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        inner = [arg for arg in args if arg is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return inner[0], True
    return hint, False


def _default_rule(hint: Any) -> Rule | None:
    """The rule of a field annotated with a bare type."""
    if hint is str:
        return Text()
    if hint is bool:
        return Flag()
    if hint is int:
        return Integer()
    if hint is uuid.UUID:
        return Id()
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return Choice()
    return None


def _rule_of(hint: Any) -> tuple[Rule, Any] | None:
    """The rule of a field's type (``None`` already stripped) and the type it reads."""
    if typing.get_origin(hint) is Annotated:
        base, _ = _strip_none(hint.__origin__)
        for meta in hint.__metadata__:
            if isinstance(meta, Rule):
                return meta, base
        hint = base
    rule = _default_rule(hint)
    return None if rule is None else (rule, hint)


def _has_rule(hint: Any) -> bool:
    return _rule_of(_strip_none(hint)[0]) is not None


def _structure_hook(hint: Any) -> Callable[[Any, Any], Any]:
    """The rule's reader; ``X | None`` too (cattrs would let other types through it)."""
    found = _rule_of(_strip_none(hint)[0])
    assert found is not None
    rule, base = found
    read = rule.reader(base)
    return lambda value, _: read(value)


# The one converter of the edge: requests in (``parse``), views out (``serialise``).
converter = cattrs.Converter(detailed_validation=True)
converter.register_structure_hook_factory(_has_rule, _structure_hook)
converter.register_unstructure_hook(uuid.UUID, str)
converter.register_unstructure_hook(
    dt.datetime, lambda moment: moment.isoformat().replace("+00:00", "Z")
)


@attrs.frozen
class RequestField:
    name: str
    rule: Rule
    base: Any
    required: bool
    nullable: bool
    default: Any


@functools.cache
def request_fields(cls: type) -> tuple[RequestField, ...]:
    """The fields of a request class; ``TypeError`` at start for a field without a rule."""
    hints = typing.get_type_hints(cls, include_extras=True)
    found = []
    for field in attrs.fields(cls):
        hint, nullable = _strip_none(hints[field.name])
        rule = _rule_of(hint)
        if rule is None:
            raise TypeError(
                f"{cls.__qualname__}.{field.name}: annotate it with a rule "
                f"(Annotated[{hint!r}, d.Text(...)] or the like)"
            )
        required = field.default is attrs.NOTHING
        factory = isinstance(field.default, typing.cast(type, attrs.Factory))
        default = None if required or factory else field.default
        found.append(RequestField(field.name, rule[0], rule[1], required, nullable, default))
    return tuple(found)


@attrs.frozen
class _Plan:
    structure: Callable[[Mapping[str, Any], Any], Any]
    optional: frozenset[str]
    one_of: tuple[str, ...]
    any_of: tuple[str, ...]


@functools.cache
def _plan(cls: type) -> _Plan:
    fields = request_fields(cls)
    return _Plan(
        structure=converter.get_structure_hook(cls),
        optional=frozenset(field.name for field in fields if not field.required),
        # A body that needs exactly one of several optional fields names them in a
        # class attribute ``one_of = ("a", "b")``; none or several is a 422.
        one_of=getattr(cls, "one_of", ()),
        # A body that needs at least one of several optional fields (a PATCH)
        # names them in ``any_of``; none is a 422.
        any_of=getattr(cls, "any_of", ()),
    )


def _message(error: BaseException) -> str:
    if isinstance(error, Invalid):
        return str(error)
    if isinstance(error, KeyError):
        return "field required"
    return "is not valid"


def parse(cls: type[T], data: Mapping[str, Any]) -> T:
    """Read ``data`` into ``cls``; every invalid field is reported at once (422)."""
    plan = _plan(typing.cast(type, cls))
    values = {
        name: value
        for name, value in dict(data).items()
        if value is not None or name not in plan.optional
    }
    errors: list[FieldError] = []
    result: Any = None
    try:
        result = plan.structure(values, cls)
    except ClassValidationError as group:
        with_notes, without = group.group_exceptions()
        if without:
            raise
        errors = [FieldError(note.name, _message(error)) for error, note in with_notes]
    if plan.one_of and sum(name in values for name in plan.one_of) != 1:
        errors.append(FieldError(plan.one_of[0], f"give exactly one of: {', '.join(plan.one_of)}"))
    if plan.any_of and not any(name in values for name in plan.any_of):
        errors.append(FieldError(plan.any_of[0], f"give at least one of: {', '.join(plan.any_of)}"))
    if errors:
        raise validation_problem(errors)
    return typing.cast(T, result)


def _field_schema(field: RequestField) -> Schema:
    schema = field.rule.schema(field.base)
    if field.default is not None:
        value = field.default
        schema["default"] = value.value if isinstance(value, enum.Enum) else value
    return schema


def request_schema(cls: type) -> Schema:
    """A body's schema: optional fields accept ``null`` (but not one of ``one_of``/``any_of``)."""
    plan = _plan(cls)
    alternatives = {*plan.one_of, *plan.any_of}
    properties: Schema = {}
    for field in request_fields(cls):
        schema = _field_schema(field)
        if field.nullable and not field.required and field.name not in alternatives:
            schema = _nullable(schema)
        properties[field.name] = schema
    schema = {
        "type": "object",
        "properties": properties,
        "required": [field.name for field in request_fields(cls) if field.required],
    }
    if plan.one_of:
        schema["oneOf"] = [{"required": [name]} for name in plan.one_of]
    if plan.any_of:
        schema["anyOf"] = [{"required": [name]} for name in plan.any_of]
    return schema


def _nullable(schema: Schema) -> Schema:
    if isinstance(schema.get("type"), str) and "enum" not in schema:
        return {**schema, "type": [schema["type"], "null"]}
    description = schema.pop("description", None)
    return _described({"anyOf": [schema, {"type": "null"}]}, description)


def query_parameters(cls: type) -> list[Schema]:
    parameters = []
    for field in request_fields(cls):
        schema = _field_schema(field)
        description = schema.pop("description", "")
        parameters.append(
            {
                "name": field.name,
                "in": "query",
                "required": field.required,
                "description": description,
                "schema": schema,
            }
        )
    return parameters


# --- path parameters -----------------------------------------------------------------


def _not_found(detail: str = "No such object.") -> Problem:
    return Problem.of("not_found", detail)


@attrs.frozen
class PathId:
    name: str
    description: str
    detail: str = "No such object."
    """The ``detail`` of the 404 for anything but a UUID."""

    def parse(self, request: web.Request) -> uuid.UUID:
        try:
            return uuid.UUID(request.match_info[self.name])
        except ValueError:
            # An id that cannot exist is simply not found.
            raise _not_found(self.detail) from None

    def schema(self) -> Schema:
        return {
            "name": self.name,
            "in": "path",
            "required": True,
            "description": f"{self.description}; anything but a UUID is not found (404)",
            "schema": {"type": "string"},
        }


def path_id(name: str, description: str, *, detail: str = "No such object.") -> PathId:
    return PathId(name, description, detail)


@attrs.frozen
class PathSlug:
    """A tenant slug in the path; anything that cannot be a slug is not found."""

    name: str
    description: str

    def parse(self, request: web.Request) -> str:
        try:
            return validate_slug(request.match_info[self.name].strip().lower())
        except ValueError:
            raise _not_found() from None

    def schema(self) -> Schema:
        return {
            "name": self.name,
            "in": "path",
            "required": True,
            "description": self.description,
            "schema": {"type": "string"},
        }


def path_slug(name: str, description: str) -> PathSlug:
    return PathSlug(name, description)


@attrs.frozen
class PathText:
    """A path segment taken as text (the handler decides what an unknown value means)."""

    name: str
    description: str
    pattern: str

    def parse(self, request: web.Request) -> str:
        return request.match_info[self.name]

    def schema(self) -> Schema:
        return {
            "name": self.name,
            "in": "path",
            "required": True,
            "description": self.description,
            "schema": {"type": "string", "pattern": self.pattern},
        }


def path_text(name: str, description: str, *, pattern: str) -> PathText:
    return PathText(name, description, pattern)


PathParam = PathId | PathSlug | PathText

# --- response views ------------------------------------------------------------------


def out(
    description: str | None = None,
    *,
    omit_if_none: bool = False,
    format: str | None = None,
    minimum: int | None = None,
    maximum: int | None = None,
    **kwargs: Any,
) -> Any:
    """A view field with a description (and a ``format`` or bounds) for the document.

    ``omit_if_none``: while the value is None the member is left out of the
    answer (and the document does not list it as required), for answers whose
    shape says something, like RFC 7662's bare ``{"active": false}``. Such a
    field defaults to None.
    """
    if omit_if_none:
        kwargs.setdefault("default", None)
    extra: Schema = {}
    if format is not None:
        extra["format"] = format
    if minimum is not None:
        extra["minimum"] = minimum
    if maximum is not None:
        extra["maximum"] = maximum
    metadata = {_OUT: description, _OMIT: omit_if_none, _EXTRA: extra}
    return attrs.field(metadata=metadata, **kwargs)


@functools.cache
def _omitted(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls) if field.metadata.get(_OMIT))


def serialise(view: object) -> Any:
    data = converter.unstructure(view)
    if isinstance(data, dict) and attrs.has(type(view)):
        for name in _omitted(typing.cast(type, type(view))):
            if data.get(name) is None:
                del data[name]
    return data


class DuplicateSchemaError(TypeError):
    """Two different classes would be one component schema of the document."""


class Components:
    """The document's component schemas, each name claimed by one class only."""

    def __init__(self, written: Mapping[str, Schema] | None = None) -> None:
        self.schemas: dict[str, Schema] = dict(written or {})
        self._owners: dict[str, object] = dict.fromkeys(self.schemas, "openapi.py")

    def claim(self, name: str, owner: object) -> bool:
        """True when ``name`` is new; the same owner again is False; another owner is refused."""
        known = self._owners.get(name)
        if known is None:
            self._owners[name] = owner
            self.schemas[name] = {}
            return True
        if known is owner:
            return False
        raise DuplicateSchemaError(
            f"two schemas are named {name!r}: {_label(known)} and {_label(owner)}; rename one"
        )


def _label(owner: object) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}"
    return str(owner)


def _type_schema(hint: Any, components: Components) -> Schema:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        schema = _type_schema(inner[0], components) if len(inner) == 1 else {}
        if type(None) not in args:
            return schema
        if "type" in schema and isinstance(schema["type"], str) and "enum" not in schema:
            return {**schema, "type": [schema["type"], "null"]}
        return {"anyOf": [schema, {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], components)}
    if origin is dict or hint is dict:
        return {"type": "object", "additionalProperties": True}
    if origin is typing.Literal:
        kind = "boolean" if all(isinstance(arg, bool) for arg in args) else "string"
        return {"type": kind, "enum": list(args)}
    if attrs.has(hint):
        return view_schema(hint, components)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"type": "string", "enum": [str(member.value) for member in hint]}
    simple: dict[Any, Schema] = {
        str: {"type": "string"},
        bool: {"type": "boolean"},
        int: {"type": "integer"},
        float: {"type": "number"},
        uuid.UUID: {"type": "string", "format": "uuid"},
        dt.datetime: {"type": "string", "format": "date-time"},
        Any: {},
    }
    if hint in simple:
        return dict(simple[hint])
    raise TypeError(f"no schema for {hint!r}")


def response_schema(view: View, components: Components) -> Schema:
    """The schema of a declared ``ok`` (see ``View``)."""
    if isinstance(view, tuple):
        return {"oneOf": [response_schema(one, components) for one in view]}
    if isinstance(view, str):
        if view not in components.schemas:
            raise TypeError(f"no component schema named {view!r}")
        return {"$ref": f"#/components/schemas/{view}"}
    return view_schema(view, components)


def view_schema(cls: type, components: Components) -> Schema:
    """A ``$ref`` to ``cls``'s schema, which is added to ``components`` on first use.

    The schema is named after the class, or its own ``schema_name`` class attribute. A
    class with ``open_ended = True`` may carry members it does not name (a JWK).
    """
    name = cls.__dict__.get("schema_name", cls.__name__)  # a subclass is named anew
    if components.claim(name, cls):  # claimed before the fields: recursion stops here
        hints = typing.get_type_hints(cls)
        properties: Schema = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            omitted = bool(field.metadata.get(_OMIT))
            hint = _strip_none(hints[field.name])[0] if omitted else hints[field.name]
            schema = {**_type_schema(hint, components), **field.metadata.get(_EXTRA, {})}
            if not omitted:
                required.append(field.name)
            description = field.metadata.get(_OUT)
            if description:
                schema = (
                    {"allOf": [schema], "description": description}
                    if "$ref" in schema
                    else {**schema, "description": description}
                )
            properties[field.name] = schema
        schema = {"type": "object", "properties": properties, "required": required}
        if getattr(cls, "open_ended", False):
            schema["additionalProperties"] = True
        if cls.__doc__:
            schema["description"] = cls.__doc__.strip().splitlines()[0]
        components.schemas[name] = schema
    return {"$ref": f"#/components/schemas/{name}"}


# --- auth ----------------------------------------------------------------------------


@attrs.frozen
class Auth:
    """How an endpoint's caller is authenticated, and what the document says of it."""

    scheme: str  # the OpenAPI security scheme
    scope: Scope | None
    error_codes: tuple[str, ...]

    async def __call__(self, request: web.Request) -> None:
        container = request.app[CONTAINER]
        if self.scope is None:
            await authenticated(request, container.authenticate())
        else:
            await authenticated_service(
                request, self.scope, container.authenticate_api_key(), container.resolve_tenant()
            )


BEARER = Auth("bearer", None, ("invalid_token",))


def api_key(scope: Scope | str) -> Auth:
    return Auth("apiKey", Scope(scope), ("invalid_api_key", "insufficient_scope"))


# --- endpoints -----------------------------------------------------------------------

Handler = Callable[..., Awaitable[Any]]

# A response view: an attrs class, the name of a component schema (``"Problem"``),
# or a tuple of those when the answer is one of several shapes.
View = type | str | tuple[type | str, ...]


@attrs.frozen
class Answer:
    """Another answer an endpoint gives besides its success and its problems."""

    status: int
    description: str
    view: View | None = None
    headers: tuple[tuple[str, str], ...] = ()
    """(name, meaning) of each header it carries."""


@attrs.frozen
class Declared:
    method: str
    path: str
    summary: str
    tag: str
    operation_id: str
    description: str | None
    body: type | None
    forms: bool
    query: type | None
    path_params: tuple[PathParam, ...]
    ok: View | None
    status: int
    ok_description: str
    auth: Auth | None
    errors: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    """Headers of the success answer, and what each holds."""
    redirect: str | None = None
    """When set, the endpoint may also answer 302 (``Location``): what it redirects to."""
    document: bool = True
    """False for a page: served, but not in the OpenAPI document."""
    content: str | None = None
    """The media type of a success body that is not JSON (the handler builds the response)."""
    answers: tuple[Answer, ...] = ()
    cookies: tuple[tuple[str, str], ...] = ()
    """(name, meaning) of each cookie the endpoint reads."""
    limited: bool = True
    """Counted by the per-IP rate limit (429)."""
    storage: bool = True
    """Reads or writes the database (503 ``service_unavailable`` while it is away)."""
    stream_in: str | None = None
    """The media type of a body of any size the handler reads itself from
    ``request.content`` (not parsed here, not bounded by the app's body limit)."""
    oauth_errors: bool = False
    """Errors are RFC 6749 JSON (``{"error", "error_description"}``), not problem+json;
    bodies are forms only, and a repeated parameter is ``invalid_request``."""
    html: bool = False
    """An HTML page (and its error pages), or a redirect: no JSON answer."""


class Endpoints:
    """A handler module's routes, each carrying its declaration (see the module docstring).

    Declaring registers nothing anywhere: the app finds every ``Endpoints`` of
    the handler modules (``collect``) and adds their routes.
    """

    def __init__(self, tag: str, *, oauth_errors: bool = False, html: bool = False) -> None:
        """``oauth_errors``: the endpoints of an OAuth 2 server (``/oauth2/*``) answer
        RFC 6749 errors, read form bodies only, and refuse a repeated parameter.
        ``html``: pages of the browser flow, answering HTML or a redirect."""
        self.tag = tag
        self.oauth_errors = oauth_errors
        self.html = html
        self.routes: list[web.RouteDef] = []
        self.declared: list[Declared] = []
        self.injected: list[Injected] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        ok: View | None = None,
        status: int | None = None,
        ok_description: str | None = None,
        body: type | None = None,
        forms: bool = False,
        query: type | None = None,
        path_params: tuple[PathParam, ...] = (),
        auth: Auth | None = None,
        errors: tuple[str, ...] = (),
        description: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        redirect: str | None = None,
        document: bool = True,
        operation_id: str | None = None,
        content: str | None = None,
        answers: tuple[Answer, ...] = (),
        cookies: tuple[tuple[str, str], ...] = (),
        limited: bool = True,
        storage: bool = True,
        stream_in: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            declared = Declared(
                method=method,
                path=path,
                summary=summary,
                tag=self.tag,
                operation_id=operation_id or handler.__name__,
                description=description,
                body=body,
                forms=forms,
                query=query,
                path_params=path_params,
                ok=ok,
                status=status or (200 if ok is not None or content else 204),
                ok_description=ok_description or summary,
                auth=auth,
                errors=errors,
                headers=headers,
                redirect=redirect,
                document=document,
                content=content,
                answers=answers,
                cookies=cookies,
                limited=limited,
                storage=storage,
                stream_in=stream_in,
                oauth_errors=self.oauth_errors,
                html=self.html,
            )
            self.declared.append(declared)
            injected = Injected.of(handler)
            self.injected.append(injected)
            endpoint = _endpoint(declared, injected)
            self.routes.append(web.RouteDef(method, path, endpoint, {}))
            return handler

        return decorate

    def get(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, **kwargs)


# dependency-injector's marker classes (its stubs type them as protocols).
_PROVIDE: Any = wiring.Provide
_MARKER: Any = wiring._Marker


class Injected:
    """A handler without its ``@inject`` wrapper, and what its ``Provide`` defaults ask for.

    ``bind`` turns each marker into the container attribute's name once; a request
    then reads that attribute of its app's container (overrides apply), so nothing
    per process is patched and two apps never share providers.
    """

    def __init__(self, handler: Handler, markers: tuple[tuple[str, Any], ...]) -> None:
        self.handler = handler
        self.markers = markers
        # (parameter, container attribute, the provider itself rather than its value)
        self.names: tuple[tuple[str, str, bool], ...] | None = None if markers else ()
        self.bound_to: type[containers.DeclarativeContainer] | None = None

    @classmethod
    def of(cls, handler: Handler) -> Injected:
        target = inspect.unwrap(handler)  # past dependency-injector's ``@inject``
        markers: list[tuple[str, Any]] = []
        for parameter in inspect.signature(target).parameters.values():
            default: Any = parameter.default
            if isinstance(default, _PROVIDE) and default.modifier is None:
                markers.append((parameter.name, default))
            elif isinstance(default, _MARKER):
                raise TypeError(
                    f"{target.__qualname__}: only Provide[<a provider>] and "
                    f"Provide[<a provider>.provider] are supported, not {default!r}"
                )
        return cls(target, tuple(markers))

    def bind(self, container: type[containers.DeclarativeContainer]) -> None:
        """Resolve the markers against ``container`` (a ``DeclarativeContainer`` class)."""
        if self.bound_to is container or not self.markers:
            return
        by_id = {id(provider): name for name, provider in container.providers.items()}
        names = []
        for parameter, marker in self.markers:
            provider, itself = marker.provider, False
            if isinstance(provider, di_providers.Delegate):
                provider, itself = provider.provides, True
            name = by_id.get(id(provider))
            if name is None:
                raise ValueError(
                    f"{self.handler.__qualname__}({parameter}=...): "
                    f"{marker!r} is no provider of {container.__name__}"
                )
            names.append((parameter, name, itself))
        self.names, self.bound_to = tuple(names), container

    def arguments(self, request: web.Request) -> dict[str, Any]:
        names = self.names
        if not names:
            if names is None:
                raise RuntimeError(f"{self.handler.__qualname__}: collect() did not bind it")
            return {}
        container = request.app[CONTAINER]
        found: dict[str, Any] = {}
        for parameter, name, itself in names:
            provider = getattr(container, name)
            found[parameter] = provider if itself else provider()
        return found


def _endpoint(declared: Declared, injected: Injected) -> Callable[[web.Request], Awaitable[Any]]:
    """The aiohttp handler: auth, path parameters, body and query, then the handler."""
    auth, path_params, body, query = (
        declared.auth,
        declared.path_params,
        declared.body,
        declared.query,
    )
    forms, status, oauth = declared.forms, declared.status, declared.oauth_errors
    handler = injected.handler

    async def answer(request: web.Request) -> web.StreamResponse:
        if auth is not None:
            await auth(request)
        arguments = injected.arguments(request)
        for param in path_params:
            arguments[param.name] = param.parse(request)
        if body is not None:
            data = await read_oauth_form(request) if oauth else await _read_body(request, forms)
            arguments["body"] = parse(body, data)
        if query is not None:
            arguments["query"] = parse(query, request.query)
        result = await handler(request, **arguments)
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            return web.Response(status=204)
        return web.json_response(serialise(result), status=status)

    async def endpoint(request: web.Request) -> web.StreamResponse:
        if not oauth:
            return await answer(request)
        try:
            return await answer(request)
        except (Problem, OAuthProtocolError) as error:
            return oauth_error_response(error)

    endpoint.__name__ = handler.__name__
    endpoint.unbounded_body = declared.stream_in is not None  # type: ignore[attr-defined]
    return endpoint


FORM = "application/x-www-form-urlencoded"


async def _read_body(request: web.Request, forms: bool) -> Mapping[str, Any]:
    if forms and request.content_type == FORM:
        return await request.post()
    return await read_json_object(request)


def collect(
    package: ModuleType, container: type[containers.DeclarativeContainer] | None = None
) -> list[Endpoints]:
    """Every ``Endpoints`` of the modules of ``package``, by module name.

    Their request classes are prepared now (a field without a rule fails here),
    and two declarations of one method and path, or of one operation id, are refused.
    With ``container`` (the ``DeclarativeContainer`` class), the handlers'
    ``Provide`` markers are resolved against it; one naming none of its providers
    is refused.
    """
    found: dict[int, Endpoints] = {}
    for module_info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, Endpoints):
                found.setdefault(id(value), value)
    endpoints = list(found.values())
    routes: dict[tuple[str, str], str] = {}
    operation_ids: set[str] = set()
    for entry in (entry for group in endpoints for entry in group.declared):
        key = (entry.method, entry.path)
        if key in routes:
            raise ValueError(f"{entry.method} {entry.path} is declared twice")
        routes[key] = entry.operation_id
        if entry.operation_id in operation_ids:
            raise ValueError(f"two endpoints have the operation id {entry.operation_id!r}")
        operation_ids.add(entry.operation_id)
        for shape in (entry.body, entry.query):
            if shape is not None:
                _plan(shape)
    if container is not None:
        for group in endpoints:
            for injected in group.injected:
                injected.bind(container)
    return endpoints
