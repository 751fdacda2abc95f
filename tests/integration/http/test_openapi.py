"""GET /openapi.json and /docs: the document is valid OpenAPI 3.1 and cannot drift
from the application: every route is described and every description is a route,
request bodies require what the handlers demand, and real answers (errors
included) are documented for their endpoint and validate against the schemas."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import jsonschema
import pytest
from aiohttp import ClientResponse
from openapi_spec_validator import validate as validate_spec
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

import identity
from identity.domain.api_keys import Scope
from identity.domain.otp import OtpPurpose
from identity.entrypoints.http import openapi as openapi_module
from identity.entrypoints.http.error_codes import ERROR_CODES
from identity.entrypoints.http.problems import DOMAIN_PROBLEMS
from tests.integration.http.conftest import CODE, PASSWORD, Api, MakeApi, other_code, text_of

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'"
TENANT_PARAMETER = {"$ref": "#/components/parameters/Tenant"}
JSON_TYPES = ("application/json", "application/problem+json")
OVER_64_KIB = 64 * 1024 + 1

Spec = dict[str, Any]


@pytest.fixture
async def spec(api: Api) -> Spec:
    response = await api.get("/openapi.json")
    assert response.status == 200, await response.text()
    return dict(await response.json())


def operations(spec: Spec) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every operation in the document."""
    for template, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), template, operation


def concrete(template: str) -> str:
    """A path for ``template``: no such provider, every other parameter a fresh UUID."""
    template = template.replace("{provider}", "nosuch")
    return re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), template)


def body_schema(spec: Spec, operation: dict[str, Any]) -> dict[str, Any]:
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return resolve(spec, schema)


def resolve(spec: Spec, schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        *_, name = schema["$ref"].split("/")
        schema = spec["components"]["schemas"][name]
    return schema


def json_body_operations(spec: Spec) -> list[tuple[str, str, dict[str, Any]]]:
    found = [op for op in operations(spec) if "requestBody" in op[2]]
    assert len(found) >= 9, "every POST endpoint with a JSON body is described with one"
    return found


def is_bearer(operation: dict[str, Any]) -> bool:
    return {"bearer": []} in operation.get("security", [])


def is_api_key(operation: dict[str, Any]) -> bool:
    return {"apiKey": []} in operation.get("security", [])


def uses_tenant(operation: dict[str, Any]) -> bool:
    """Resolves ``X-Tenant`` itself (an API key's endpoints take the key's tenant instead)."""
    return not is_api_key(operation) and {"$ref": "#/components/parameters/Tenant"} in (
        operation.get("parameters", [])
    )


def validate(spec: Spec, instance: Any, schema: dict[str, Any]) -> None:
    """``instance`` against an (OpenAPI 3.1 = JSON Schema 2020-12) schema of ``spec``."""
    root = {"allOf": [schema], "components": spec["components"]}
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    validator.validate(instance)


def flattened(spec: Spec, schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and every schema it is ``allOf``, references resolved."""
    schema = resolve(spec, schema)
    parts = [schema]
    for part in schema.get("allOf", []):
        parts += flattened(spec, part)
    return parts


def undocumented(spec: Spec, schema: dict[str, Any], instance: Any, at: str = "") -> list[str]:
    """Fields of ``instance`` that its schema does not name (JSON Schema allows them)."""
    parts = flattened(spec, schema)
    properties: dict[str, Any] = {}
    for part in parts:
        properties.update(part.get("properties", {}))
    found: list[str] = []
    if isinstance(instance, dict) and properties:
        if not any(part.get("additionalProperties") for part in parts):
            found += [f"{at}/{key}" for key in instance if key not in properties]
        for key, value in instance.items():
            if key in properties:
                found += undocumented(spec, properties[key], value, f"{at}/{key}")
    items = next((part["items"] for part in parts if "items" in part), None)
    if isinstance(instance, list) and items is not None:
        for index, value in enumerate(instance):
            found += undocumented(spec, items, value, f"{at}/{index}")
    return found


async def conforms(spec: Spec, method: str, template: str, response: ClientResponse) -> Any:
    """Assert the answer is documented for the operation and matches it; return its body.

    Also: every answer but the docs page keeps the strict default CSP."""
    text = await response.text()
    operation = spec["paths"][template][method.lower()]
    documented = operation["responses"].get(str(response.status))
    assert documented is not None, (
        f"{method} {template} answered an undocumented {response.status}: {text}"
    )
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{method} {template}: {name} is documented"
    if template != "/docs":
        assert response.headers["Content-Security-Policy"] == STRICT_CSP, template
    content = documented.get("content")
    if not content:
        assert text == "", f"{method} {template} {response.status} has no documented body"
        return None
    assert response.content_type in content, (method, template, response.content_type)
    schema = content[response.content_type]["schema"]
    if response.content_type not in JSON_TYPES:
        return text
    body = await response.json(content_type=None)
    try:
        validate(spec, body, schema)
    except jsonschema.ValidationError as error:
        pytest.fail(f"{method} {template} {response.status}: {error.message} in {body}")
    extra = undocumented(spec, schema, body)
    assert not extra, f"{method} {template} {response.status}: undocumented {extra}"
    return body


async def call(
    api: Api,
    spec: Spec,
    method: str,
    template: str,
    *,
    path: str | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[ClientResponse, Any]:
    headers = dict(kwargs.pop("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    response = await api.client.request(
        method, path or concrete(template), headers=headers, allow_redirects=False, **kwargs
    )
    return response, await conforms(spec, method, template, response)


# --- The document itself -------------------------------------------------------------


async def test_the_document_is_valid_openapi_3_1(api: Api, spec: Spec) -> None:
    validate_spec(spec)  # raises on any structural error
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["version"] == identity.__version__
    assert spec["servers"] == [{"url": api.settings.issuer.rstrip("/")}]


def test_the_validator_refuses_a_broken_document() -> None:
    """The check above can fail: a response without its required description is caught."""
    document = openapi_module.openapi_document("http://127.0.0.1:8000")
    validate_spec(document)
    del document["paths"]["/auth/me"]["get"]["responses"]["200"]["description"]
    with pytest.raises(OpenAPIValidationError):
        validate_spec(document)


async def test_served_as_cacheable_json_with_the_strict_policy(api: Api) -> None:
    response = await api.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert response.headers["Content-Security-Policy"] == STRICT_CSP


async def test_every_route_is_described_and_every_description_is_a_route(
    api: Api, spec: Spec
) -> None:
    served = {
        (route.method, route.resource.canonical)
        for route in api.client.app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The hosted pages are HTML for people, not part of the JSON API's document.
        and not route.resource.canonical.startswith("/ui/")
    }
    described = {(method, template) for method, template, _ in operations(spec)}
    assert described == served
    # The contract's endpoints, named here so a route lost from both sides is caught too.
    assert {
        ("POST", "/auth/register"),
        ("POST", "/auth/resend-otp"),
        ("DELETE", "/auth/sessions/{session_id}"),
        ("GET", "/auth/google/callback"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/admin/api-keys"),
        ("DELETE", "/admin/api-keys/{key_id}"),
        ("GET", "/auth/oidc/{provider}/login"),
        ("GET", "/auth/oidc/{provider}/callback"),
        ("GET", "/auth/github/login"),
        ("GET", "/auth/github/callback"),
        ("GET", "/auth/identities"),
        ("POST", "/auth/identities/{provider}/link"),
        ("DELETE", "/auth/identities/{provider}"),
    } <= described


def test_every_code_a_domain_error_raises_is_in_the_table() -> None:
    for code, _detail in DOMAIN_PROBLEMS.values():
        assert ERROR_CODES[code].status >= 400, code


async def test_every_operation_documents_its_errors_and_codes(spec: Spec) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(spec)]
    assert len(ids) == len(set(ids))
    for method, template, operation in operations(spec):
        for status, response in operation["responses"].items():
            schema = response.get("content", {}).get("application/problem+json", {}).get("schema")
            if schema is None:
                continue
            codes = schema["allOf"][1]["properties"]["code"]["enum"]
            assert codes, (method, template, status)
            for code in codes:
                assert ERROR_CODES[code].status == int(status)
                assert f"`{code}`" in response["description"], (method, template, code)
        if template.startswith("/auth/") and not is_api_key(operation):
            assert uses_tenant(operation), (method, template)
        if template not in ("/health", "/metrics"):
            assert "429" in operation["responses"], (method, template)


# --- Request bodies match the handlers -----------------------------------------------


@attrs.frozen
class Credentials:
    """What a described operation needs to get past its auth."""

    access_token: str
    api_key: str

    def of(self, operation: dict[str, Any]) -> str | None:
        if is_bearer(operation):
            return self.access_token
        if is_api_key(operation):
            return self.api_key
        return None


async def _token(api: Api) -> Credentials:
    tokens = await api.register_verified(f"{uuid.uuid4().hex[:10]}@example.com")
    # Every scope the default tenant's operator may hold.
    key = await api.api_key(*(scope.value for scope in Scope))
    return Credentials(str(tokens["access_token"]), key)


async def test_the_required_fields_are_those_the_handlers_demand(api: Api, spec: Spec) -> None:
    token = await _token(api)
    for method, template, operation in json_body_operations(spec):
        response, body = await call(api, spec, method, template, json={}, token=token.of(operation))
        assert response.status == 422, (template, body)
        schema = body_schema(spec, operation)
        required = set(schema["required"])
        for alternatives in ("oneOf", "anyOf"):  # the first is named when none is given
            if alternatives in schema:
                required |= set(schema[alternatives][0]["required"])
        assert {error["field"] for error in body["errors"]} == required, template


async def test_every_described_field_is_read_by_the_handler(api: Api, spec: Spec) -> None:
    """Each property sent with the wrong type is refused by name: none is described but unread."""
    token = await _token(api)
    for method, template, operation in json_body_operations(spec):
        properties = body_schema(spec, operation)["properties"]
        response, body = await call(
            api,
            spec,
            method,
            template,
            json=dict.fromkeys(properties, 1),
            token=token.of(operation),
        )
        assert response.status == 422, (template, body)
        assert {error["field"] for error in body["errors"]} == set(properties), template


async def test_the_purposes_described_are_those_accepted(api: Api, spec: Spec) -> None:
    checked = 0
    for method, template, operation in json_body_operations(spec):
        purpose = body_schema(spec, operation)["properties"].get("purpose")
        if purpose is None:
            continue
        for candidate in [*(p.value for p in OtpPurpose), "bogus"]:
            _, body = await call(api, spec, method, template, json={"purpose": candidate})
            refused = "purpose" in {error["field"] for error in body["errors"]}
            assert refused == (candidate not in purpose["enum"]), (template, candidate)
        checked += 1
    assert checked == 3  # request-otp, resend-otp, verify-otp


# --- Every answer is documented -------------------------------------------------------


async def test_what_a_stranger_gets_is_documented(api: Api, spec: Spec) -> None:
    statuses = set()
    for method, template, operation in operations(spec):
        kwargs: dict[str, Any] = {"json": {}} if "requestBody" in operation else {}
        response, _ = await call(api, spec, method, template, **kwargs)
        statuses.add(response.status)
    assert {200, 401, 404, 422} <= statuses


async def test_refused_bodies_are_documented(api: Api, spec: Spec) -> None:
    token = await _token(api)
    refusals: list[tuple[int, dict[str, Any]]] = [
        (415, {"data": "email=a@example.com"}),
        (400, {"data": "{", "headers": {"Content-Type": "application/json"}}),
        (413, {"json": {"email": "a" * OVER_64_KIB}}),
        (422, {"json": ["not", "an", "object"]}),
    ]
    for method, template, operation in json_body_operations(spec):
        for status, kwargs in refusals:
            bearer = token.of(operation)
            response, _ = await call(api, spec, method, template, token=bearer, **kwargs)
            assert response.status == status, template


async def test_an_unknown_tenant_is_documented(api: Api, spec: Spec) -> None:
    for method, template, operation in operations(spec):
        if not uses_tenant(operation):
            continue
        kwargs: dict[str, Any] = {"json": {}} if "requestBody" in operation else {}
        response, body = await call(
            api, spec, method, template, headers={"X-Tenant": "no-such-tenant"}, **kwargs
        )
        assert response.status == 404 and body["code"] == "tenant_not_found", template


async def test_an_empty_tenant_header_is_refused_on_every_operation_that_reads_it(
    api: Api, spec: Spec
) -> None:
    """The declared pattern refuses an empty ``X-Tenant``: never the default tenant.

    Where the header picks the tenant it names none (404 ``tenant_not_found``);
    where an API key picks it, it is not the key's tenant (403 ``insufficient_scope``).
    """
    token = await _token(api)
    checked = 0
    for method, template, operation in operations(spec):
        if TENANT_PARAMETER not in operation.get("parameters", []):
            continue
        kwargs: dict[str, Any] = {"json": {}} if "requestBody" in operation else {}
        response, body = await call(
            api,
            spec,
            method,
            template,
            token=token.of(operation),
            headers={"X-Tenant": ""},
            **kwargs,
        )
        expected = (
            (404, "tenant_not_found")
            if template.startswith("/auth/")
            else (403, "insufficient_scope")
        )
        assert (response.status, body["code"]) == expected, (method, template, body)
        checked += 1
    assert checked >= 40


async def test_rate_limited_answers_are_documented(make_api: MakeApi) -> None:
    api = await make_api(RATE_LIMIT_GLOBAL="1/minute")
    spec = dict(await (await api.get("/openapi.json")).json())
    for method, template, operation in operations(spec):
        kwargs: dict[str, Any] = {"json": {}} if "requestBody" in operation else {}
        response, _ = await call(api, spec, method, template, **kwargs)
        if template in ("/health", "/metrics"):
            assert response.status == 200, template
        else:
            assert response.status == 429, template
            assert int(response.headers["Retry-After"]) >= 1


async def next_code(api: Api, email: str) -> str:
    """The code in the next mail to ``email`` that has one (notices are passed over)."""
    while True:
        codes = CODE.findall(text_of(await api.next_mail(email)))
        if codes:
            return str(codes[0])


async def test_the_account_lifecycle_answers_as_documented(api: Api, spec: Spec) -> None:
    email = "lifecycle@example.com"
    answer = await call(
        api,
        spec,
        "POST",
        "/auth/register",
        json={"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"},
    )
    assert answer[0].status == 202
    response, _ = await call(
        api, spec, "POST", "/auth/register", json={"email": "weak@example.com", "password": "a"}
    )
    assert response.status == 422
    code = await api.next_code(email)  # the account exists once its code is mailed
    response, body = await call(
        api, spec, "POST", "/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert body["code"] == "email_not_verified"
    verify = {"email": email, "otp_code": other_code(code), "purpose": "verification"}
    response, body = await call(api, spec, "POST", "/auth/verify-otp", json=verify)
    assert body["code"] == "otp_invalid"
    response, tokens = await call(
        api, spec, "POST", "/auth/verify-otp", json={**verify, "otp_code": code}
    )
    assert response.status == 200 and tokens["user"]["full_name"] == "Ada Lovelace"

    response, body = await call(
        api, spec, "POST", "/auth/login", json={"email": email, "password": "wrong password"}
    )
    assert body["code"] == "invalid_credentials"
    response, second = await call(
        api, spec, "POST", "/auth/login", json={"email": email, "password": PASSWORD}
    )
    assert response.status == 200
    access = tokens["access_token"]
    _, me = await call(api, spec, "GET", "/auth/me", token=access)
    assert me["email"] == email
    _, listed = await call(api, spec, "GET", "/auth/sessions", token=access)
    assert len(listed["sessions"]) == 2

    refreshed = {"refresh_token": second["refresh_token"]}
    response, _ = await call(api, spec, "POST", "/auth/refresh-token", json=refreshed)
    assert response.status == 200
    response, body = await call(api, spec, "POST", "/auth/logout", json=refreshed)
    assert response.status == 200
    response, body = await call(api, spec, "POST", "/auth/refresh-token", json=refreshed)
    assert body["code"] == "invalid_token"

    sessions = "/auth/sessions/{session_id}"
    response, body = await call(api, spec, "DELETE", sessions, token=access)
    assert body["code"] == "not_found"
    response, body = await call(
        api, spec, "DELETE", sessions, path="/auth/sessions/not-a-uuid", token=access
    )
    assert body["code"] == "not_found"
    await api.login(email)  # a session other than the caller's
    _, now = await call(api, spec, "GET", "/auth/sessions", token=access)
    other = next(s["id"] for s in now["sessions"] if not s["current"])
    response, _ = await call(
        api, spec, "DELETE", sessions, path=f"/auth/sessions/{other}", token=access
    )
    assert response.status == 204

    change = {"current_password": "not the password", "new_password": "another long passphrase"}
    response, body = await call(
        api, spec, "POST", "/auth/change-password", json=change, token=access
    )
    assert body["code"] == "invalid_credentials"
    response, _ = await call(
        api,
        spec,
        "POST",
        "/auth/change-password",
        json={**change, "current_password": PASSWORD},
        token=access,
    )
    assert response.status == 200

    response, _ = await call(
        api,
        spec,
        "POST",
        "/auth/request-otp",
        json={"email": email, "purpose": "password_reset"},
    )
    assert response.status == 202
    reset = {"email": email, "otp_code": await next_code(api, email), "new_password": PASSWORD}
    response, _ = await call(api, spec, "POST", "/auth/reset-password", json=reset)
    assert response.status == 200
    response, body = await call(api, spec, "POST", "/auth/logout-all", token=access)
    assert body["code"] == "invalid_token"  # the reset ended every session
    fresh = await api.login(email)
    response, body = await call(api, spec, "POST", "/auth/logout-all", token=fresh["access_token"])
    assert body["sessions_revoked"] >= 1


async def test_system_and_google_answers_are_documented(api: Api, spec: Spec) -> None:
    for template in (
        "/health",
        "/metrics",
        "/.well-known/jwks.json",
        "/.well-known/openid-configuration",
        "/openapi.json",
        "/docs",
    ):
        response, _ = await call(api, spec, "GET", template)
        assert response.status == 200, template
    response, body = await call(api, spec, "GET", "/auth/google/login")
    assert body["code"] == "provider_not_configured"
    response, _ = await call(
        api, spec, "GET", "/auth/google/callback", params={"code": "x", "state": "y"}
    )
    assert response.status in (400, 404)


# --- The docs page ---------------------------------------------------------------------


def directives(policy: str) -> dict[str, list[str]]:
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


def allowed(url: str, sources: list[str]) -> bool:
    return any(
        source.startswith("https://")
        and (url == source or url.startswith(source.rstrip("/") + "/"))
        for source in sources
    )


async def test_the_docs_page_relaxes_the_policy_for_itself_only(api: Api) -> None:
    response = await api.get("/docs")
    page = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert policy != STRICT_CSP
    csp = directives(policy)
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["connect-src"] == ["'self'"]
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "https:"} & set(csp["script-src"])
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"

    # External files: from the allowed places only, each pinned by its integrity hash.
    scripts = re.findall(r"<script src=\"([^\"]+)\"\s+integrity=\"(sha384-[^\"]+)\"", page)
    styles = re.findall(
        r"<link rel=\"stylesheet\" href=\"([^\"]+)\"\s+integrity=\"(sha384-[^\"]+)\"", page
    )
    assert scripts and styles
    for url, _ in scripts:
        assert allowed(url, csp["script-src"]), url
    for url, _ in styles:
        assert allowed(url, csp["style-src"]), url
    assert page.count("<script") == len(scripts) + 1
    assert page.count('crossorigin="anonymous"') == len(scripts) + len(styles)

    # The one inline script runs because its hash is allowed, and it loads the document.
    (inline,) = re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp["script-src"]
    assert '"openapi.json"' in inline

    # The relaxation stays on the docs page.
    other = await api.get("/openapi.json")
    assert other.headers["Content-Security-Policy"] == STRICT_CSP
    missing = await api.get("/docs/other")
    assert missing.headers["Content-Security-Policy"] == STRICT_CSP


async def test_linked_identity_answers_are_documented(api: Api, spec: Spec) -> None:
    token = (await _token(api)).access_token

    _, listed = await call(api, spec, "GET", "/auth/identities", token=token)
    link, refused = await call(
        api,
        spec,
        "POST",
        "/auth/identities/{provider}/link",
        path="/auth/identities/github/link",
        token=token,
    )
    unlink, missing = await call(
        api,
        spec,
        "DELETE",
        "/auth/identities/{provider}",
        path="/auth/identities/github",
        token=token,
    )
    login, _ = await call(api, spec, "GET", "/auth/github/login")

    assert listed == {"items": []}
    assert link.status == 404 and refused["code"] == "provider_not_configured"
    assert unlink.status == 404 and missing["code"] == "not_found"
    assert login.status == 404
