"""Conventions every response follows (contract section 1): headers, problems, request ids,
body limits, the access log, and /health."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import ClientResponse
from dependency_injector import providers
from sqlalchemy.engine import make_url

from identity.entrypoints.http.app import build_container
from identity.entrypoints.http.handlers.system import HEALTH_DATABASE_TIMEOUT
from identity.entrypoints.logs import JsonFormatter
from identity.entrypoints.settings import Settings
from tests.integration.http.conftest import Api, MakeApi, problem_of

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
GENERATED_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
INTERNALS = "secret internals"
OVER_64_KIB = 64 * 1024 + 1


async def _explode(*_args: Any) -> None:
    raise RuntimeError(INTERNALS)


@pytest.fixture
async def broken_login_api(make_api: MakeApi, settings_for: Callable[..., Settings]) -> Api:
    """An app whose login use case raises an unexpected exception: the path to a 500."""
    container = build_container(settings_for())
    container.log_in.override(providers.Object(_explode))
    return await make_api(container=container)


Call = Callable[[Api], Awaitable[ClientResponse]]

# status -> a request that answers it (on the broken-login app)
RESPONSES: dict[str, tuple[int, Call]] = {
    "200": (200, lambda api: api.get("/.well-known/jwks.json")),
    "404": (404, lambda api: api.get("/no/such/page")),
    "404 under /auth": (404, lambda api: api.get("/auth/no-such-endpoint")),
    "405": (405, lambda api: api.get("/auth/login")),
    "413": (413, lambda api: api.post("/auth/register", {"email": "a" * OVER_64_KIB})),
    "415": (
        415,
        lambda api: api.post("/auth/register", data="email=a@example.com", headers={}),
    ),
    "422": (422, lambda api: api.post("/auth/register", {})),
    "500": (
        500,
        lambda api: api.post("/auth/login", {"email": "a@example.com", "password": "x" * 12}),
    ),
}


PROBLEM_CODES = {
    "404": "not_found",
    "404 under /auth": "not_found",
    "405": "method_not_allowed",
    "413": "payload_too_large",
    "415": "unsupported_media_type",
    "422": "validation_error",
    "500": "internal_error",
}


async def test_every_response_carries_the_security_headers(broken_login_api: Api) -> None:
    for case, (status, call) in RESPONSES.items():
        response = await call(broken_login_api)

        assert response.status == status, (case, await response.text())
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (case, name)
        assert GENERATED_REQUEST_ID.match(response.headers["X-Request-ID"]), case
        assert "Strict-Transport-Security" not in response.headers, case  # IDENTITY_HSTS off
        server = response.headers.get("Server", "")
        assert "aiohttp" not in server.lower() and "python" not in server.lower(), case
        assert not re.search(r"\d+\.\d+", server), f"{case}: Server names a version: {server}"
        if response.url.path.startswith("/auth/"):
            assert response.headers.get("Cache-Control") == "no-store", case
        else:
            assert response.headers.get("Cache-Control") != "no-store", case


async def test_every_error_is_a_problem_detail(broken_login_api: Api) -> None:
    for case, code in PROBLEM_CODES.items():
        status, call = RESPONSES[case]
        response = await call(broken_login_api)

        problem = await problem_of(response, status, code)
        assert problem["type"].startswith("https://"), case
        assert ("errors" in problem) == (status == 422), case


async def test_a_500_reveals_no_internals(
    broken_login_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="identity.errors")
    response = await broken_login_api.post(
        "/auth/login", {"email": "a@example.com", "password": "x" * 12}
    )

    body = await problem_of(response, 500, "internal_error")
    text = json.dumps(body)
    assert INTERNALS not in text
    assert "RuntimeError" not in text and "Traceback" not in text
    assert set(body) == {"type", "title", "status", "detail", "code"}
    # The operator still gets the details, tied to the request id.
    [record] = [r for r in caplog.records if r.name == "identity.errors"]
    assert record.exc_info is not None and INTERNALS in str(record.exc_info[1])
    assert getattr(record, "request_id", None) == response.headers["X-Request-ID"]


async def test_apps_with_different_containers_in_one_process_stay_apart(
    broken_login_api: Api, make_api: MakeApi, migrated_sqlite_url: str
) -> None:
    """Each app answers from its own container, whatever app was made or closed after it."""
    other = await make_api(database_url=migrated_sqlite_url)
    login = {"email": "nobody@example.com", "password": "x" * 12}

    await problem_of(await other.post("/auth/login", login), 401, "invalid_credentials")
    await problem_of(await broken_login_api.post("/auth/login", login), 500, "internal_error")
    jwks = []
    for api in (broken_login_api, other):
        response = await api.get("/.well-known/jwks.json")
        assert response.status == 200
        jwks.append(await response.json())
        assert jwks[-1] == api.container.token_codec().keyring.jwks()
    assert jwks[0] != jwks[1]

    await other.client.close()
    await problem_of(await broken_login_api.post("/auth/login", login), 500, "internal_error")
    assert await (await broken_login_api.get("/.well-known/jwks.json")).json() == jwks[0]


async def test_hsts_only_when_enabled(make_api: MakeApi) -> None:
    api = await make_api(HSTS="true")

    for response in (await api.get("/health"), await api.get("/auth/nothing-here")):
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")


async def test_validation_errors_name_each_field(api: Api) -> None:
    response = await api.post("/auth/login", {"email": "not an email", "password": 12})

    body = await problem_of(response, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"email", "password"}
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])


async def test_405_names_the_allowed_methods(api: Api) -> None:
    response = await api.get("/auth/register")

    await problem_of(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


async def test_malformed_json_is_a_400(api: Api) -> None:
    # Cut short, empty, not UTF-8, and nested deeper than the parser's recursion limit.
    for body in (b'{"email": "a@example.com",', b"", b"\xff\xfe", b"[" * 60_000):
        response = await api.post(
            "/auth/register", data=body, headers={"Content-Type": "application/json"}
        )

        await problem_of(response, 400, "malformed_json")
    not_an_object = await api.post("/auth/login", ["a@example.com", "password"])
    await problem_of(not_an_object, 422, "validation_error")


async def test_a_body_that_is_not_json_is_a_415(api: Api) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = await api.post(
            "/auth/login",
            data=b'{"email": "a@example.com", "password": "whatever-it-is"}',
            headers={"Content-Type": content_type},
        )

        await problem_of(response, 415, "unsupported_media_type")


async def test_a_body_over_64_kib_is_a_413_even_without_a_length(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(70):
            yield b"a" * 1024
        yield b'"}'

    declared = await api.post("/auth/register", {"email": "a" * OVER_64_KIB})
    streamed = await api.post(
        "/auth/register", data=chunks(), headers={"Content-Type": "application/json"}
    )

    await problem_of(declared, 413, "payload_too_large")
    await problem_of(streamed, 413, "payload_too_large")


async def test_a_body_of_exactly_64_kib_is_read(api: Api) -> None:
    prefix, suffix = b'{"email": "a@example.com", "full_name": "', b'"}'
    body = prefix + b"x" * (64 * 1024 - len(prefix) - len(suffix)) + suffix

    response = await api.post(
        "/auth/register", data=body, headers={"Content-Type": "application/json"}
    )

    # Read and validated (the name is too long), not refused for its size.
    problem = await problem_of(response, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["full_name"]


async def test_a_sane_request_id_is_echoed(api: Api) -> None:
    for inbound in ("abc-123", "0f5e1b6c.trace:42_x", "A" * 128):
        ok = await api.get("/health", headers={"X-Request-ID": inbound})
        failed = await api.get("/nowhere", headers={"X-Request-ID": inbound})

        assert ok.headers["X-Request-ID"] == inbound
        assert failed.headers["X-Request-ID"] == inbound


async def test_an_insane_request_id_is_replaced(api: Api) -> None:
    for inbound in ("x" * 500, "has spaces in it", "semi;colon", "<script>", "A" * 129):
        response = await api.get("/health", headers={"X-Request-ID": inbound})

        assert response.headers["X-Request-ID"] != inbound
        assert GENERATED_REQUEST_ID.match(response.headers["X-Request-ID"]), inbound
    first, second = await api.get("/health"), await api.get("/health")
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "identity.access"]


async def test_successful_health_polls_are_logged_at_debug_only(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await api.get("/health")).status == 200

    [record] = _access_records(caplog)
    assert record.levelno == logging.DEBUG
    assert vars(record)["path"] == "/health"


async def test_the_access_log_records_the_path_but_never_the_query(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await api.get(
        "/.well-known/jwks.json?code=SECRET123&state=xyz", headers={"X-Request-ID": "req-1"}
    )
    assert response.status == 200

    [record] = _access_records(caplog)
    assert record.levelno == logging.INFO  # well under IDENTITY_SLOW_REQUEST_MS
    fields = vars(record)
    assert fields["method"] == "GET"
    assert fields["path"] == "/.well-known/jwks.json"
    assert fields["status"] == 200
    assert fields["request_id"] == "req-1"
    assert isinstance(fields["duration_ms"], float)
    assert "SECRET123" not in JsonFormatter().format(record)
    for record in caplog.records:
        assert "SECRET123" not in JsonFormatter().format(record), record.name


async def test_the_access_log_records_failures_with_their_status(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="identity.access")
    await api.post("/auth/login", {"email": "nobody@example.com", "password": "x" * 12})

    [record] = _access_records(caplog)
    assert (vars(record)["method"], vars(record)["path"], vars(record)["status"]) == (
        "POST",
        "/auth/login",
        401,
    )


async def test_a_slow_request_logs_a_warning(
    make_api: MakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api(SLOW_REQUEST_MS="1")
    caplog.set_level(logging.INFO, logger="identity.access")

    # Registration hashes the password: far above 1 ms.
    response = await api.post(
        "/auth/register", {"email": "slow@example.com", "password": "a slow password"}
    )

    [record] = _access_records(caplog)
    assert record.levelno == logging.WARNING
    assert vars(record)["path"] == "/auth/register"
    assert vars(record)["request_id"] == response.headers["X-Request-ID"]
    assert vars(record)["duration_ms"] > 1


async def test_health_reports_each_check(api: Api) -> None:
    response = await api.get("/health")

    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "email": "ok", "rate_limiter": "ok"},
    }


async def test_health_is_not_rate_limited(make_api: MakeApi) -> None:
    api = await make_api(RATE_LIMIT_GLOBAL="2/minute")

    statuses = [(await api.get("/health")).status for _ in range(5)]
    limited = [(await api.get("/.well-known/jwks.json")).status for _ in range(3)]

    assert statuses == [200] * 5
    assert limited == [200, 200, 429]


async def test_cors_only_for_configured_origins(make_api: MakeApi) -> None:
    api = await make_api(CORS_ORIGINS="https://app.example")

    allowed = await api.get("/health", headers={"Origin": "https://app.example"})
    other = await api.get("/health", headers={"Origin": "https://evil.example"})
    preflight = await api.client.options(
        "/auth/login",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )

    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "Access-Control-Allow-Origin" not in other.headers
    assert preflight.status == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert preflight.headers["X-Request-ID"]


async def test_cors_headers_are_on_error_answers_too(make_api: MakeApi) -> None:
    api = await make_api(CORS_ORIGINS="https://app.example")
    origin = {"Origin": "https://app.example"}

    wrong = await api.post(
        "/auth/login", {"email": "a@example.com", "password": "x" * 12}, headers=origin
    )
    invalid = await api.post("/auth/login", {}, headers=origin)
    unknown_tenant = await api.get("/auth/me", headers={**origin, "X-Tenant": "nope"})

    for response in (wrong, invalid, unknown_tenant):
        assert response.status in {401, 404, 422}
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]


# --- /health while the database is away ------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; can refuse, hang, or forward again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = 0
        self.hang = False
        self.held = 0  # connections accepted and left hanging
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (connections are refused) and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._writers.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        if self.hang:
            self.held += 1
            return  # accepted, never answered: a database that hangs
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            sink.close()


@pytest.fixture
async def proxied_api(
    make_api: MakeApi, migrated_postgres_url: str
) -> AsyncIterator[tuple[Api, TcpProxy]]:
    url = make_url(migrated_postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    database_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    api = await make_api(database_url=database_url, DB_POOL_TIMEOUT="2s")
    yield api, proxy
    await proxy.stop()


async def health_until(api: Api, status: int, seconds: float) -> tuple[ClientResponse, float]:
    """Poll /health until it answers ``status``; the answer and how long it took."""
    started = time.monotonic()
    while True:
        response = await api.get("/health")
        elapsed = time.monotonic() - started
        if response.status == status:
            return response, elapsed
        assert elapsed < seconds, f"/health still {response.status} after {elapsed:.2f} s"
        await asyncio.sleep(0.05)


async def test_health_is_503_while_the_database_is_unreachable(
    proxied_api: tuple[Api, TcpProxy],
) -> None:
    api, proxy = proxied_api
    assert (await api.get("/health")).status == 200

    await proxy.stop()
    # A probe result is reused for at most a second.
    down, noticed_after = await health_until(api, 503, seconds=2.0)
    body = await down.json()
    await proxy.start()  # the same port again
    up, _ = await health_until(api, 200, seconds=3.0)

    assert noticed_after < 1.6
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "unavailable"
    assert down.headers["Retry-After"].isdigit()
    assert (await up.json())["checks"]["database"] == "ok"


async def test_health_answers_within_2_s_when_the_database_hangs(
    proxied_api: tuple[Api, TcpProxy],
) -> None:
    api, proxy = proxied_api
    await proxy.stop()
    proxy.hang = True
    await proxy.start()
    # No pooled connection left: /health has to open one, into the hanging server.
    await api.container.engine().dispose()

    started = time.monotonic()
    response = await api.get("/health")
    elapsed = time.monotonic() - started

    assert response.status == 503
    assert (await response.json())["checks"]["database"] == "unavailable"
    # The probe gives up after HEALTH_DATABASE_TIMEOUT (1.5 s, checked below against the
    # spec's 2 s); the rest is the test machine's own scheduling, which two test workers
    # on two cores can stretch by more than the 0.5 s of slack. A hang would wait for
    # the connect or statement timeout (30 s).
    assert HEALTH_DATABASE_TIMEOUT <= 1.5
    assert elapsed < HEALTH_DATABASE_TIMEOUT + 1.5
    assert proxy.held >= 1


async def test_an_endpoint_needing_the_database_is_a_503_while_it_is_away(
    proxied_api: tuple[Api, TcpProxy],
) -> None:
    api, proxy = proxied_api
    await proxy.stop()

    response = await api.post("/auth/login", {"email": "a@example.com", "password": "x" * 12})

    problem = await problem_of(response, 503, "service_unavailable")
    assert "asyncpg" not in json.dumps(problem) and "Connect" not in json.dumps(problem)


# --- input no layer may turn into a 500 ------------------------------------------------


async def raw_request(api: Api, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes no well-behaved client library would; return status, headers, body."""
    reader, writer = await asyncio.open_connection(api.client.host, api.client.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


async def test_protocol_errors_are_problems_with_the_headers_and_echo_nothing(api: Api) -> None:
    requests = {
        "oversized header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
        + b"echo" * 5000
        + b"\r\nConnection: close\r\n\r\n",
        "invalid method": b"BR<echo> /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    }
    for case, request in requests.items():
        status, headers, body = await raw_request(api, request)

        assert 400 <= status < 500, case
        assert b"echo" not in body, case
        assert headers.get("content-type", "").startswith("application/problem+json"), case
        assert headers.get("x-content-type-options") == "nosniff", case
        assert "x-request-id" in headers, case


async def test_text_the_database_cannot_store_is_a_422(api: Api) -> None:
    for raw in (b"a\\u0000b", b"\\ud800"):
        response = await api.post(
            "/auth/register",
            data=b'{"email": "named@example.com", "full_name": "' + raw + b'"}',
            headers={"Content-Type": "application/json"},
        )

        problem = await problem_of(response, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["full_name"]


async def test_an_undecodable_tenant_header_is_not_a_500(api: Api) -> None:
    status, _, body = await raw_request(
        api,
        b"GET /auth/me HTTP/1.1\r\nHost: x\r\nX-Tenant: \xff\xfe\r\nConnection: close\r\n\r\n",
    )

    assert status == 404, body
    assert json.loads(body)["code"] == "tenant_not_found"


async def test_unknown_routes_and_methods_answer_before_any_tenant_lookup(api: Api) -> None:
    wrong_method = await api.client.request("TRACE", "/auth/login", headers={"X-Tenant": "nope"})
    no_route = await api.get("/auth/nothing-here", headers={"X-Tenant": "nope"})
    assert wrong_method.status == 405
    assert (await problem_of(no_route, 404, "not_found"))["status"] == 404
