"""Declared endpoints: one declaration gives the route, the parsing and the OpenAPI entry.

A request body (or query) is an attrs class whose fields say how each value
is read and bounded; a response view is an attrs class whose annotations say
its shape. An endpoint names both, its auth and its error codes::

    @attrs.frozen
    class CreateUser:
        email: Email = d.email()
        full_name: str | None = d.text("the display name", max_length=200, required=False)

    @attrs.frozen
    class UserView:
        id: UUID
        email: str = d.out("the normalised address")

    endpoints = d.Endpoints(tag="admin")

    @endpoints.post("/admin/users", summary="Create a user", body=CreateUser,
                    ok=UserView, status=201, auth=d.api_key(Scope.USERS_WRITE),
                    errors=("email_taken",))
    @inject
    async def create_user(request, body: CreateUser, use_case=Provide[...]) -> UserView:
        ...

The handler receives ``body=`` / ``query=`` / one keyword per path parameter,
already validated (every bad field is reported at once, 422), after the auth
has run. It returns a view (serialised with the declared status), ``None``
(204) or a ready ``web.StreamResponse``. ``openapi.py`` turns every
``Endpoints`` into paths and component schemas, so the document cannot drift
from what the handlers read.
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from aiohttp import web

from identity.application.pagination import DEFAULT_LIMIT, MAX_LIMIT
from identity.application.ports import Position
from identity.domain.api_keys import Scope
from identity.domain.oauth import OAuthProtocolError
from identity.domain.tenants import validate_slug
from identity.entrypoints.http.bodies import MAX_EMAIL_LENGTH, Body, read_json_object
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.http.oauth_errors import oauth_error_response, read_oauth_form
from identity.entrypoints.http.pagination import MAX_CURSOR_LENGTH, decode_cursor
from identity.entrypoints.http.principals import (
    authenticated,
    authenticated_service,
    service,
    user,
)
from identity.entrypoints.http.problems import Problem

__all__ = [
    "BEARER",
    "Endpoints",
    "PageQuery",
    "api_key",
    "boolean",
    "choice",
    "cursor",
    "digits",
    "email",
    "integer",
    "limit",
    "mapping",
    "new_password",
    "out",
    "password",
    "path_id",
    "path_slug",
    "service",
    "string_list",
    "text",
    "user",
    "uuid_field",
]

Schema = dict[str, Any]
T = TypeVar("T")
_WIRE = "identity.wire"
_OUT = "identity.out"
_OMIT = "identity.omit_if_none"

# --- request fields ------------------------------------------------------------------


@attrs.frozen
class Wire:
    """How one request field is read and described."""

    schema: Schema
    read: Callable[[Body, str], Any]
    required: bool


def _declare(
    schema: Schema, read: Callable[[Body, str], Any], *, required: bool, default: Any = None
) -> Any:
    wire = Wire(schema, read, required)
    if required:
        return attrs.field(metadata={_WIRE: wire})
    return attrs.field(metadata={_WIRE: wire}, default=default)


def text(description: str, *, max_length: int = 1024, required: bool = True, **schema: Any) -> Any:
    return _declare(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": max_length,
            "description": description,
            **schema,
        },
        lambda body, name: body.text(name, max_length=max_length),
        required=required,
    )


def email(
    description: str = "an email address; normalised before any lookup", *, required: bool = True
) -> Any:
    return _declare(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EMAIL_LENGTH,
            "format": "email",
            "description": description,
        },
        lambda body, name: body.email(name),
        required=required,
    )


def password(description: str = "a password", *, required: bool = True) -> Any:
    return _declare(
        {"type": "string", "minLength": 1, "maxLength": 4096, "description": description},
        lambda body, name: body.password(name),
        required=required,
    )


def new_password(required: bool = True) -> Any:
    return _declare(
        {
            "type": "string",
            "minLength": 8,
            "maxLength": 256,
            "description": "a new password: 8 to 256 characters, no composition rules; "
            "the most common passwords are refused (422)",
        },
        lambda body, name: body.password(name),
        required=required,
    )


def digits(length: int, description: str, *, required: bool = True) -> Any:
    return _declare(
        {
            "type": "string",
            "maxLength": 16,
            "pattern": rf"^\s*[0-9]{{{length}}}\s*$",
            "description": description,
        },
        lambda body, name: body.digits(name, length),
        required=required,
    )


def boolean(description: str, *, required: bool = False, default: bool | None = None) -> Any:
    return _declare(
        {"type": "boolean", "description": description},
        lambda body, name: body.boolean(name),
        required=required,
        default=default,
    )


def integer(
    description: str,
    *,
    minimum: int,
    maximum: int,
    required: bool = False,
    default: int | None = None,
) -> Any:
    schema: Schema = {
        "type": "integer",
        "minimum": minimum,
        "maximum": maximum,
        "description": description,
    }
    if default is not None:
        schema["default"] = default
    return _declare(
        schema,
        lambda body, name: body.integer(name, minimum=minimum, maximum=maximum),
        required=required,
        default=default,
    )


def uuid_field(description: str, *, required: bool = True) -> Any:
    return _declare(
        {"type": "string", "format": "uuid", "description": description},
        lambda body, name: body.uuid(name),
        required=required,
    )


def choice(
    options: type[enum.Enum] | tuple[str, ...], description: str, *, required: bool = True
) -> Any:
    """One of an enum's values (the handler gets the member) or of plain strings."""
    values = (
        tuple(str(member.value) for member in options)
        if isinstance(options, type)
        else tuple(options)
    )

    def read(body: Body, name: str) -> Any:
        raw = body.text(name, max_length=64)
        if raw in values:
            return options(raw) if isinstance(options, type) else raw
        if raw:
            body.fail(name, f"must be one of: {', '.join(values)}")
        return None

    return _declare(
        {"type": "string", "enum": list(values), "description": description},
        read,
        required=required,
    )


def string_list(
    description: str,
    *,
    choices: tuple[str, ...] | None = None,
    max_items: int = 50,
    max_length: int = 200,
    required: bool = True,
) -> Any:
    items: Schema = {"type": "string", "minLength": 1, "maxLength": max_length}
    if choices is not None:
        items = {"type": "string", "enum": list(choices)}
    return _declare(
        {"type": "array", "items": items, "maxItems": max_items, "description": description},
        lambda body, name: body.string_list(
            name, choices=choices, max_items=max_items, max_length=max_length
        ),
        required=required,
    )


def mapping(description: str, *, max_items: int = 50, required: bool = True) -> Any:
    return _declare(
        {"type": "object", "maxProperties": max_items, "description": description},
        lambda body, name: body.mapping(name, max_items=max_items),
        required=required,
    )


def _read_cursor(body: Body, name: str) -> Position | None:
    raw = body.text(name, max_length=MAX_CURSOR_LENGTH)
    if not raw:
        return None
    try:
        return decode_cursor(raw)
    except ValueError:
        body.fail(name, "not a cursor this API gave out; pass `next_cursor` as it came")
        return None


def cursor() -> Any:
    """The ``cursor`` of a paginated list: the handler gets a ``Position`` or None."""
    return _declare(
        {
            "type": "string",
            "maxLength": MAX_CURSOR_LENGTH,
            "description": "opaque: the `next_cursor` of the previous page; absent for the first",
        },
        _read_cursor,
        required=False,
    )


def limit() -> Any:
    return integer(
        "items per page", minimum=1, maximum=MAX_LIMIT, required=False, default=DEFAULT_LIMIT
    )


@attrs.frozen
class PageQuery:
    """``?limit=&cursor=`` of a paginated list."""

    limit: int = limit()
    cursor: Position | None = cursor()


def _wires(cls: type) -> list[tuple[str, Wire]]:
    return [(field.name, field.metadata[_WIRE]) for field in attrs.fields(cls)]


def parse(cls: type[T], data: Mapping[str, Any]) -> T:
    """Read ``data`` into ``cls``; every invalid field is reported at once (422)."""
    body = Body(dict(data))
    values: dict[str, Any] = {}
    for name, wire in _wires(cls):
        if not wire.required and data.get(name) is None:
            continue  # the declared default
        values[name] = wire.read(body, name)
    one_of: tuple[str, ...] = getattr(cls, "one_of", ())
    if one_of and sum(data.get(name) is not None for name in one_of) != 1:
        body.fail(one_of[0], f"give exactly one of: {', '.join(one_of)}")
    any_of: tuple[str, ...] = getattr(cls, "any_of", ())
    if any_of and all(data.get(name) is None for name in any_of):
        body.fail(any_of[0], f"give at least one of: {', '.join(any_of)}")
    body.check()
    return cls(**values)


def request_schema(cls: type) -> Schema:
    wires = _wires(cls)
    schema: Schema = {
        "type": "object",
        "properties": {name: wire.schema for name, wire in wires},
        "required": [name for name, wire in wires if wire.required],
    }
    # A body that needs exactly one of several optional fields names them in a
    # class attribute ``one_of = ("a", "b")``; ``parse`` refuses none or several (422).
    one_of: tuple[str, ...] = getattr(cls, "one_of", ())
    if one_of:
        schema["oneOf"] = [{"required": [name]} for name in one_of]
    # A body that needs at least one of several optional fields (a PATCH) names
    # them in ``any_of``; ``parse`` refuses none (422).
    any_of: tuple[str, ...] = getattr(cls, "any_of", ())
    if any_of:
        schema["anyOf"] = [{"required": [name]} for name in any_of]
    return schema


def query_parameters(cls: type) -> list[Schema]:
    return [
        {
            "name": name,
            "in": "query",
            "required": wire.required,
            "description": wire.schema.get("description", ""),
            "schema": {k: v for k, v in wire.schema.items() if k != "description"},
        }
        for name, wire in _wires(cls)
    ]


# --- path parameters -----------------------------------------------------------------


@attrs.frozen
class PathId:
    name: str
    description: str

    def parse(self, request: web.Request) -> uuid.UUID:
        try:
            return uuid.UUID(request.match_info[self.name])
        except ValueError:
            # An id that cannot exist is simply not found.
            raise Problem(404, "not_found", "Not found", "No such object.") from None

    def schema(self) -> Schema:
        return {
            "name": self.name,
            "in": "path",
            "required": True,
            "description": f"{self.description}; anything but a UUID is not found (404)",
            "schema": {"type": "string"},
        }


def path_id(name: str, description: str) -> PathId:
    return PathId(name, description)


@attrs.frozen
class PathSlug:
    """A tenant slug in the path; anything that cannot be a slug is not found."""

    name: str
    description: str

    def parse(self, request: web.Request) -> str:
        try:
            return validate_slug(request.match_info[self.name].strip().lower())
        except ValueError:
            raise Problem(404, "not_found", "Not found", "No such object.") from None

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


# --- response views ------------------------------------------------------------------


def out(description: str | None = None, *, omit_if_none: bool = False, **kwargs: Any) -> Any:
    """A view field with a description for the document.

    ``omit_if_none``: while the value is None the member is left out of the
    answer (and the document does not list it as required), for answers whose
    shape says something, like RFC 7662's bare ``{"active": false}``. Such a
    field defaults to None.
    """
    if omit_if_none:
        kwargs.setdefault("default", None)
    return attrs.field(metadata={_OUT: description, _OMIT: omit_if_none}, **kwargs)


_converter = cattrs.Converter()
_converter.register_unstructure_hook(uuid.UUID, str)
_converter.register_unstructure_hook(
    dt.datetime, lambda moment: moment.isoformat().replace("+00:00", "Z")
)


def serialise(view: object) -> Any:
    data = _converter.unstructure(view)
    if attrs.has(type(view)) and isinstance(data, dict):
        for field in attrs.fields(typing.cast(Any, type(view))):
            if field.metadata.get(_OMIT) and data.get(field.name) is None:
                del data[field.name]
    return data


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def _type_schema(hint: Any, components: dict[str, Schema]) -> Schema:
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
        return {"type": "string", "enum": list(args)}
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


def response_schema(view: View, components: dict[str, Schema]) -> Schema:
    """The schema of a declared ``ok`` (see ``View``)."""
    if isinstance(view, tuple):
        return {"oneOf": [response_schema(one, components) for one in view]}
    if isinstance(view, str):
        return {"$ref": f"#/components/schemas/{view}"}
    return view_schema(view, components)


def view_schema(cls: type, components: dict[str, Schema]) -> Schema:
    """A ``$ref`` to ``cls``'s schema, which is added to ``components`` on first use."""
    name = cls.__name__
    if name not in components:
        components[name] = {}  # claims the name; recursion stops here
        hints = typing.get_type_hints(cls)
        properties: Schema = {}
        required: list[str] = []
        for field in attrs.fields(cls):
            omitted = bool(field.metadata.get(_OMIT))
            hint = _without_none(hints[field.name]) if omitted else hints[field.name]
            schema = _type_schema(hint, components)
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
        components[name] = {
            "type": "object",
            "properties": properties,
            "required": required,
        }
        if cls.__doc__:
            components[name]["description"] = cls.__doc__.strip().splitlines()[0]
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
    path_params: tuple[PathId | PathSlug | PathText, ...]
    ok: View | None
    status: int
    ok_description: str
    auth: Auth | None
    errors: tuple[str, ...]
    headers: tuple[tuple[str, str], ...] = ()
    """Headers of the success answer, and what each holds."""
    redirect: str | None = None
    """When set, the endpoint may also answer 302 (``Location``): what it redirects to."""
    oauth_errors: bool = False
    """Errors are RFC 6749 JSON (``{"error", "error_description"}``), not problem+json."""
    html: bool = False
    """An HTML page (and its error pages), or a redirect: no JSON answer."""


# A response view: an attrs class, the name of a component schema (``"TokenResponse"``),
# or a tuple of those when the answer is one of several shapes.
View = type | str | tuple[type | str, ...]


_REGISTRY: list[Endpoints] = []


class Endpoints:
    """A route table whose routes carry their declarations (see the module docstring)."""

    def __init__(self, tag: str, *, oauth_errors: bool = False, html: bool = False) -> None:
        """``oauth_errors``: the endpoints of an OAuth 2 server (``/oauth2/*``) answer
        RFC 6749 errors, read form bodies only, and refuse a repeated parameter.
        ``html``: pages of the browser flow, answering HTML or a redirect."""
        self.tag = tag
        self.oauth_errors = oauth_errors
        self.html = html
        self.routes = web.RouteTableDef()
        self.declared: list[Declared] = []
        _REGISTRY.append(self)

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
        path_params: tuple[PathId | PathSlug | PathText, ...] = (),
        auth: Auth | None = None,
        errors: tuple[str, ...] = (),
        description: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        redirect: str | None = None,
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            declared = Declared(
                method=method,
                path=path,
                summary=summary,
                tag=self.tag,
                operation_id=handler.__name__,
                description=description,
                body=body,
                forms=forms,
                query=query,
                path_params=path_params,
                ok=ok,
                status=status or (200 if ok is not None else 204),
                ok_description=ok_description or summary,
                auth=auth,
                errors=errors,
                headers=headers,
                redirect=redirect,
                oauth_errors=self.oauth_errors,
                html=self.html,
            )
            self.declared.append(declared)
            oauth_errors = self.oauth_errors

            async def endpoint(request: web.Request) -> web.StreamResponse:
                if not oauth_errors:
                    return await answer(request)
                try:
                    return await answer(request)
                except (Problem, OAuthProtocolError) as error:
                    return oauth_error_response(error)

            async def answer(request: web.Request) -> web.StreamResponse:
                if auth is not None:
                    await auth(request)
                arguments: dict[str, Any] = {
                    param.name: param.parse(request) for param in path_params
                }
                if body is not None:
                    data = (
                        await read_oauth_form(request)
                        if oauth_errors
                        else await _read_body(request, forms)
                    )
                    arguments["body"] = parse(body, data)
                if query is not None:
                    arguments["query"] = parse(query, request.query)
                result = await handler(request, **arguments)
                if isinstance(result, web.StreamResponse):
                    return result
                if result is None:
                    return web.Response(status=204)
                return web.json_response(serialise(result), status=declared.status)

            endpoint.__name__ = handler.__name__
            self.routes.route(method, path)(endpoint)
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


FORM = "application/x-www-form-urlencoded"


async def _read_body(request: web.Request, forms: bool) -> Mapping[str, Any]:
    if forms and request.content_type == FORM:
        return await request.post()
    return await read_json_object(request)


def declared() -> list[Declared]:
    """Every declared endpoint of every imported handler module."""
    return [entry for endpoints in _REGISTRY for entry in endpoints.declared]
