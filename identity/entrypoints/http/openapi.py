"""The OpenAPI 3.1 description of every endpoint the service answers.

Built from the declarations (``declare.Endpoints``) the app collects: nothing
here describes an operation by hand. The integration tests hold it to the
running application: every route is described and every description is a
route, request bodies require exactly what the handlers demand, and every
answer of the test suite is one its operation lists (error codes included).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import Any, ClassVar

import attrs

import identity
from identity.entrypoints.http import declare, handlers
from identity.entrypoints.http import declare as d
from identity.entrypoints.http.error_codes import ERROR_CODES
from identity.entrypoints.http.limits import MAX_BODY_BYTES
from identity.entrypoints.http.problems import PROBLEM_CONTENT_TYPE

Schema = dict[str, Any]

JSON = "application/json"

# Every endpoint that reads a JSON body.
JSON_BODY = ("malformed_json", "payload_too_large", "unsupported_media_type", "validation_error")
TENANT_PATTERN = "^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"


@attrs.frozen
class ProblemView:
    """An RFC 9457 problem."""

    schema_name: ClassVar[str] = "Problem"

    type: str = d.out(format="uri-reference")
    title: str = d.out()
    status: int = d.out(minimum=400, maximum=599)
    detail: str = d.out()
    code: str = d.out("a stable, machine-readable error code")


@attrs.frozen
class FieldErrorView:
    """One invalid field."""

    schema_name: ClassVar[str] = "FieldError"

    field: str = d.out("the body field; empty for the body itself")
    message: str = d.out()


@attrs.frozen
class ValidationProblemView(ProblemView):
    """A problem with one entry per invalid field (`validation_error`)."""

    schema_name: ClassVar[str] = "ValidationProblem"

    errors: list[FieldErrorView] = d.out()


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> Schema:
    return {JSON: {"schema": schema}}


def header(description: str, schema_type: str = "string", *, required: bool = True) -> Schema:
    return {"description": description, "required": required, "schema": {"type": schema_type}}


RATE_LIMIT_HEADERS: Schema = {
    f"{prefix}RateLimit-{name}": header(meaning, "integer")
    for prefix in ("", "X-")
    for name, meaning in (
        ("Limit", "requests allowed in the window"),
        ("Remaining", "requests left in the window"),
        ("Reset", "seconds until the window resets"),
    )
}


def errors(*codes: str, bearer: bool = False, api_key: bool = False) -> dict[str, Schema]:
    """Problem responses for ``codes``, one per status, each listing its codes."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(ERROR_CODES[code].status, []).append(code)
    responses: dict[str, Schema] = {}
    for status, found in sorted(by_status.items()):
        lines = "\n".join(f"- `{code}`: {ERROR_CODES[code].when}" for code in found)
        base = "ValidationProblem" if status == 422 else "Problem"
        response: Schema = {
            "description": f"Problem details; `code` is one of:\n{lines}",
            "content": {
                PROBLEM_CONTENT_TYPE: {
                    "schema": {"allOf": [ref(base), {"properties": {"code": {"enum": found}}}]}
                }
            },
        }
        response_headers: Schema = {}
        if status == 429:
            response_headers["Retry-After"] = header("seconds to wait", "integer")
            response_headers.update(RATE_LIMIT_HEADERS)
        if status == 503:
            response_headers["Retry-After"] = header("seconds to wait", "integer")
        if status == 401 and bearer:
            response_headers["WWW-Authenticate"] = header(
                '`Bearer error="invalid_token"` (with `invalid_token`)', required=False
            )
        if status == 401 and api_key:
            response_headers["WWW-Authenticate"] = header("`Bearer`", required=False)
        if response_headers:
            response["headers"] = response_headers
        responses[str(status)] = response
    return responses


DESCRIPTION = f"""\
A self-hosted identity service: accounts, one-time codes, tokens, sessions and
Google sign-in.

- JSON in, JSON out. Bodies over {MAX_BODY_BYTES // 1024} KiB are refused.
- Every error is an RFC 9457 `{PROBLEM_CONTENT_TYPE}` body with a stable `code`, but
  under `/oauth2/`: RFC 6749 errors, or error pages for the browser's endpoints.
- Every response carries `X-Request-ID`; rate-limited endpoints also carry
  `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (and `X-RateLimit-*`).
- The tenant is chosen by the `X-Tenant` header (its slug), else `default`.
- Access tokens are JWTs verifiable with the keys at `/.well-known/jwks.json`.
"""


TENANT_PARAMETER: Schema = {"$ref": "#/components/parameters/Tenant"}


def _content(view: declare.View, components: declare.Components) -> Schema:
    return json_content(declare.response_schema(view, components))


_OAUTH_ERROR: Schema = {
    "description": "an RFC 6749 error: `invalid_request`, `invalid_client` (401, with "
    "`WWW-Authenticate`), `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, "
    "`invalid_scope`, `invalid_target`, `insufficient_scope` (403), `invalid_token` (401)",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
                "required": ["error"],
            }
        }
    },
}
OAUTH_ERRORS: dict[str, Schema] = {status: _OAUTH_ERROR for status in ("400", "401", "403", "413")}
# What the edge's problems become under /oauth2/ (``oauth_errors.edge_answer``).
_OAUTH_CODE_OF = {"429": "too_many_requests", "503": "temporarily_unavailable"}


def _reshaped(problems: dict[str, Schema], html: bool) -> dict[str, Schema]:
    """``problems`` with their statuses and headers, answered as ``edge_answer`` does under
    ``/oauth2/``: an RFC 6749 error, or an error page for the browser's endpoints."""
    reshaped: dict[str, Schema] = {}
    for status, problem in problems.items():
        if html:
            response: Schema = {
                "description": "an error page",
                "content": {"text/html": {"schema": {}}},
            }
        else:
            code = _OAUTH_CODE_OF.get(status, "invalid_request")
            response = {**_OAUTH_ERROR, "description": f"an RFC 6749 error: `{code}`"}
        if "headers" in problem:
            response["headers"] = problem["headers"]
        reshaped[status] = response
    return reshaped


def declared_operation(entry: declare.Declared, components: declare.Components) -> Schema:
    """The operation of an endpoint declared with ``declare.Endpoints``."""
    result: Schema = {
        "operationId": entry.operation_id,
        "summary": entry.summary,
        "tags": [entry.tag],
    }
    if entry.description:
        result["description"] = entry.description
    codes: list[str] = []
    parameters: list[Schema] = []
    tenant = entry.path.startswith("/auth/")
    if tenant or (entry.auth and entry.auth.scope):
        parameters.append(TENANT_PARAMETER)
    if tenant:
        codes.append("tenant_not_found")
    if entry.limited:
        codes.append("rate_limited")
    if entry.storage:
        codes.append("service_unavailable")
    if entry.auth is not None:
        result["security"] = [{entry.auth.scheme: []}]
        codes = [*entry.auth.error_codes, *codes]
    if entry.path_params:
        parameters += [param.schema() for param in entry.path_params]
        codes.append("not_found")
    if entry.query is not None:
        parameters += declare.query_parameters(entry.query)
        codes.append("validation_error")
    if entry.query is not None or entry.cookies:
        # A request line or cookie over the HTTP parser's limits is refused before the
        # handler (a query's values, percent-encoded, can exceed it).
        codes.append("bad_request")
    parameters += [
        {
            "name": name,
            "in": "cookie",
            "required": False,
            "description": meaning,
            "schema": {"type": "string"},
        }
        for name, meaning in entry.cookies
    ]
    if parameters:
        result["parameters"] = parameters
    if entry.body is not None:
        schema = declare.request_schema(entry.body)
        content = json_content(schema)
        if entry.forms:
            content[declare.FORM] = {"schema": schema}
        if entry.oauth_errors:  # RFC 6749: form bodies only
            content = {declare.FORM: {"schema": schema}}
        result["requestBody"] = {"required": True, "content": content}
        codes = [*JSON_BODY, *codes]
    if entry.stream_in is not None:
        # Any bytes: each line is judged by the run (a bad one is refused in its report).
        streamed: Schema = {"description": "streamed, of any size; one record per line"}
        result["requestBody"] = {
            "required": True,
            "content": {entry.stream_in: {"schema": streamed}},
        }
        codes = ["unsupported_media_type", *codes]
    codes += entry.errors
    ok: Schema = {"description": entry.ok_description}
    if entry.content is not None:
        # A body the handler builds itself: text, or a JSON document of its own shape.
        body_type = "object" if entry.content == "application/json" else "string"
        ok["content"] = {entry.content: {"schema": {"type": body_type}}}
    elif entry.ok is not None:
        ok["content"] = _content(entry.ok, components)
    if entry.headers:
        ok["headers"] = {name: header(meaning) for name, meaning in entry.headers}
    responses: dict[str, Schema] = {str(entry.status): ok}
    if entry.redirect is not None:
        responses["302"] = {
            "description": entry.redirect,
            "headers": {"Location": header("where the browser goes next")},
        }
    if entry.html:
        page = {"description": "an HTML page", "content": {"text/html": {"schema": {}}}}
        moved = {
            "description": entry.redirect or "a redirect",
            "headers": {"Location": header("where the browser goes next")},
        }
        result["responses"] = {
            "200": {**page, "description": entry.ok_description},
            "302": moved,
            "303": moved,
            "400": {**page, "description": "an error page; never a redirect"},
            "403": {**page, "description": "a refused form (another site, a stale form)"},
            **_reshaped(errors("payload_too_large", "rate_limited", "service_unavailable"), True),
        }
        return result
    if entry.oauth_errors:
        result["responses"] = {
            **responses,
            **OAUTH_ERRORS,
            **_reshaped(errors("rate_limited", "service_unavailable", *entry.errors), False),
        }
        return result
    for answer in entry.answers:
        other: Schema = {"description": answer.description}
        if answer.view is not None:
            other["content"] = _content(answer.view, components)
        if answer.headers:
            other["headers"] = {
                name: header(meaning, "integer" if name == "Retry-After" else "string")
                for name, meaning in answer.headers
            }
        responses[str(answer.status)] = other
    result["responses"] = {
        **responses,
        **errors(
            *codes,
            bearer=entry.auth is declare.BEARER,
            api_key=entry.auth is not None and entry.auth.scope is not None,
        ),
    }
    return result


def declared_paths(
    endpoints: Iterable[declare.Endpoints], components: declare.Components
) -> dict[str, Schema]:
    paths: dict[str, Schema] = {}
    for entry in (entry for group in endpoints for entry in group.declared):
        if not entry.document:
            continue
        operation = declared_operation(entry, components)
        paths.setdefault(entry.path, {})[entry.method.lower()] = operation
    return paths


TAGS = [
    {"name": "accounts", "description": "Registration, codes, passwords, sign-in."},
    {"name": "sessions", "description": "Tokens and sessions."},
    {"name": "google", "description": "Sign-in with Google (OpenID Connect)."},
    {
        "name": "providers",
        "description": "Sign-in with GitHub and the configured OpenID Connect providers.",
    },
    {"name": "identities", "description": "The signed-in user's linked identities."},
    {"name": "mfa", "description": "Multi-factor authentication (TOTP, recovery codes)."},
    {"name": "system", "description": "Health, metrics and key discovery."},
    {"name": "docs", "description": "This description."},
]


def openapi_document(
    issuer: str, endpoints: Iterable[declare.Endpoints] | None = None
) -> dict[str, Any]:
    """The whole document for a deployment whose public base URL is ``issuer``.

    ``endpoints``: those the app serves (default: every handler module's).
    ``declare.DuplicateSchemaError`` when two classes would share a schema name.
    """
    if endpoints is None:
        endpoints = declare.collect(handlers)
    components = declare.Components()
    declare.view_schema(ProblemView, components)
    declare.view_schema(ValidationProblemView, components)
    paths = declared_paths(endpoints, components)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "identity",
            "version": identity.__version__,
            "description": DESCRIPTION,
        },
        "servers": [{"url": issuer.rstrip("/") or "/"}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "parameters": {
                "Tenant": {
                    "name": "X-Tenant",
                    "in": "header",
                    "required": False,
                    "description": "the tenant's slug; `default` when absent",
                    "schema": {"type": "string", "pattern": TENANT_PATTERN},
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "an access token from a token response",
                },
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "idk_<id>_<secret>",
                    "description": "an API key: `identity apikeys create`, `POST /admin/api-keys`",
                },
            },
        },
    }


@functools.lru_cache(maxsize=8)
def openapi_json(issuer: str, endpoints: tuple[declare.Endpoints, ...]) -> bytes:
    """The document serialised once per issuer (the app makes it when it is created)."""
    return json.dumps(openapi_document(issuer, endpoints), separators=(",", ":")).encode()
