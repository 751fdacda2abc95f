"""Webhooks end to end: management over HTTP, and delivery from the durable queue to a
real aiohttp receiver that verifies every request with the ``standardwebhooks`` package.

The retry schedule and the sender's timeout are shortened through the container
(the production values are minutes and 10 s); everything else is the real app on
real Postgres.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
import standardwebhooks
from aiohttp import web
from dependency_injector import providers
from sqlalchemy import select

from identity.adapters.sqlalchemy import tables
from identity.entrypoints.container import Container
from identity.entrypoints.http import app as http_app
from identity.entrypoints.http.app import build_container
from identity.entrypoints.settings import Settings
from tests.integration.http.conftest import Api, MakeApi, problem_of
from tests.integration.http.test_metrics import metrics_text, sample

WAIT_SECONDS = 15.0
FAST = (timedelta(milliseconds=100),) * 3


@pytest.fixture(autouse=True)
def _prompt_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_app, "WEBHOOK_POLL_SECONDS", 0.05)


class Receiver:
    """A webhook endpoint: answers by ``plan`` (status codes, or "hang"), then 204;
    keeps every request, and those whose signature verified with ``secrets``."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.plan: list[int | str] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.verified: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = dict(request.headers)
        self.requests.append((headers, body))
        step = self.plan.pop(0) if self.plan else 204
        if step == "hang":
            await self.release.wait()
            step = 204
        for secret in self.secrets:
            payload = standardwebhooks.Webhook(secret).verify(body, headers)
            self.verified.append(payload)
        return web.Response(status=int(step))

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def container_for(
    settings: Settings, *, timeout: float = 10.0, schedule: tuple[timedelta, ...] = FAST
) -> Container:
    container = build_container(settings)
    container.webhook_retry_schedule.override(providers.Object(schedule))
    container.webhook_timeout.override(providers.Object(timeout))
    return container


async def webhook_api(
    make_api: MakeApi,
    settings_for: Callable[..., Settings],
    *,
    send_timeout: float = 10.0,
    schedule: tuple[timedelta, ...] = FAST,
    beside: Api | None = None,
    **env: str,
) -> Api:
    """An app that may deliver to this machine; ``beside`` another: on its database,
    with its master secret (a second server of one deployment)."""
    if beside is not None:
        env["SECRET_KEY"] = beside.settings.secret_key.value
    database_url = beside.settings.database_url if beside else None
    settings = settings_for(database_url=database_url, WEBHOOK_ALLOW_PRIVATE="true", **env)
    container = container_for(settings, timeout=send_timeout, schedule=schedule)
    return await make_api(container=container)


async def subscribe(api: Api, url: str, *events: str) -> dict[str, Any]:
    manager = await api.api_key("webhooks:manage", name="hooks")
    response = await api.post(
        "/admin/webhooks", {"url": url, "events": list(events or ["login.failed"])}, token=manager
    )
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    created["manager"] = manager
    return created


async def fail_login(api: Api, email: str = "nobody@example.com") -> None:
    response = await api.post("/auth/login", {"email": email, "password": "not the password"})
    assert response.status == 401


async def deliveries(api: Api, hook: dict[str, Any]) -> list[dict[str, Any]]:
    response = await api.get(f"/admin/webhooks/{hook['id']}/deliveries", token=hook["manager"])
    assert response.status == 200, await response.text()
    return list((await response.json())["items"])


# --- management ----------------------------------------------------------------


async def test_webhooks_are_created_listed_rotated_and_deleted(api: Api) -> None:
    # A public address, never contacted: nothing here records a subscribed event.
    manager = await api.api_key("webhooks:manage")
    body = {"url": "https://93.184.215.14/hooks", "events": ["user.created", "login.failed"]}
    response = await api.post("/admin/webhooks", body, token=manager)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["login.failed", "user.created"]

    listed = await (await api.get("/admin/webhooks", token=manager)).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert created["secret"] not in str(listed) and "secret" not in listed["items"][0]
    # Sealed at rest: the stored bytes hold neither the secret nor its key.
    async with api.container.engine().connect() as connection:
        row = (await connection.execute(select(tables.webhooks))).one()
    key = base64.b64decode(created["secret"].removeprefix("whsec_"))
    assert created["secret"].encode() not in bytes(row.secret) and key not in bytes(row.secret)

    rotated = await api.post(f"/admin/webhooks/{created['id']}/rotate-secret", token=manager)
    assert rotated.status == 200
    new_secret = (await rotated.json())["secret"]
    assert new_secret.startswith("whsec_") and new_secret != created["secret"]

    assert (await api.delete(f"/admin/webhooks/{created['id']}", token=manager)).status == 204
    for response in (
        await api.delete(f"/admin/webhooks/{created['id']}", token=manager),
        await api.post(f"/admin/webhooks/{uuid.uuid4()}/rotate-secret", token=manager),
        await api.get(f"/admin/webhooks/{created['id']}/deliveries", token=manager),
        await api.delete("/admin/webhooks/not-an-id", token=manager),
    ):
        await problem_of(response, 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://localhost:9/hook",
        "ftp://93.184.215.14/hook",
        "https://user:pw@93.184.215.14/hook",
    ],
)
async def test_unsafe_targets_are_refused_at_creation(api: Api, url: str) -> None:
    manager = await api.api_key("webhooks:manage")
    response = await api.post(
        "/admin/webhooks", {"url": url, "events": ["login.failed"]}, token=manager
    )
    body = await problem_of(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "url"
    listed = await (await api.get("/admin/webhooks", token=manager)).json()
    assert listed["items"] == []


async def test_bad_bodies_and_missing_scope_are_refused(api: Api) -> None:
    manager = await api.api_key("webhooks:manage")
    for body in (
        {"url": "https://93.184.215.14/", "events": []},
        {"url": "https://93.184.215.14/", "events": ["user.exploded"]},
        {"events": ["login.failed"]},
    ):
        await problem_of(
            await api.post("/admin/webhooks", body, token=manager), 422, "validation_error"
        )
    reader = await api.api_key("events:read")
    await problem_of(await api.get("/admin/webhooks", token=reader), 403, "insufficient_scope")


# --- delivery ------------------------------------------------------------------


async def test_an_event_is_delivered_signed_and_verifiable_with_standardwebhooks(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    api = await webhook_api(make_api, settings_for)
    hook = await subscribe(api, receiver.url, "login.failed")
    receiver.secrets = [hook["secret"]]
    await api.post("/auth/register", {"email": "quiet@example.com"})  # not subscribed
    await fail_login(api)

    await until(lambda: len(receiver.verified) == 1, "one verified delivery")
    payload = receiver.verified[0]
    headers, _ = receiver.requests[0]
    reader = await api.api_key("events:read")
    [event] = (await (await api.get("/admin/events?type=login.failed", token=reader)).json())[
        "items"
    ]
    assert headers["webhook-id"] == event["id"]
    assert headers["Content-Type"] == "application/json"
    assert payload == {"type": "login.failed", "timestamp": event["occurred_at"], "data": event}

    await until_status(api, hook, "delivered")
    [delivery] = await deliveries(api, hook)
    assert delivery["event_id"] == event["id"] and delivery["type"] == "login.failed"
    assert delivery["attempts"] == 1 and delivery["last_status_code"] == 204
    assert delivery["next_attempt_at"] is None and delivery["last_error"] is None


async def until_status(api: Api, hook: dict[str, Any], status: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await deliveries(api, hook)
        if found and all(item["status"] == status for item in found):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries never all {status}: {found}")
        await asyncio.sleep(0.05)


async def test_after_a_rotation_both_secrets_sign(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    api = await webhook_api(make_api, settings_for)
    hook = await subscribe(api, receiver.url)
    rotated = await api.post(f"/admin/webhooks/{hook['id']}/rotate-secret", token=hook["manager"])
    new_secret = (await rotated.json())["secret"]
    receiver.secrets = [hook["secret"], new_secret]  # each verifies on its own
    await fail_login(api)

    await until(lambda: len(receiver.verified) == 2, "verification with both secrets")
    headers, _ = receiver.requests[0]
    assert len(headers["webhook-signature"].split(" ")) == 2


async def test_a_500_and_a_timeout_are_retried_until_delivered(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    api = await webhook_api(make_api, settings_for, send_timeout=0.5)
    hook = await subscribe(api, receiver.url)
    receiver.secrets = [hook["secret"]]
    receiver.plan = [500, "hang"]
    await fail_login(api)

    await until_status(api, hook, "delivered")
    [delivery] = await deliveries(api, hook)
    assert delivery["attempts"] == 3 and delivery["last_status_code"] == 204
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {delivery["event_id"]}  # one id across the retries
    assert len(receiver.requests) == 3


async def test_the_queue_depth_is_in_the_metrics(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    # One failed attempt, then the next one an hour away: the delivery waits.
    api = await webhook_api(make_api, settings_for, schedule=(timedelta(hours=1),))
    await subscribe(api, receiver.url)
    receiver.plan = [503]
    assert sample(await metrics_text(api), "identity_webhook_deliveries_pending") == 0

    await fail_login(api)  # the event and its delivery are committed before the answer
    await fail_login(api, "someone@example.com")

    assert sample(await metrics_text(api), "identity_webhook_deliveries_pending") == 2


async def test_a_delivery_fails_once_the_schedule_is_spent(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    api = await webhook_api(make_api, settings_for)
    hook = await subscribe(api, receiver.url)
    receiver.plan = [503] * 10
    await fail_login(api)

    await until_status(api, hook, "failed")
    [delivery] = await deliveries(api, hook)
    assert delivery["attempts"] == len(FAST) + 1
    assert delivery["last_status_code"] == 503 and delivery["last_error"] == "answered 503"
    assert delivery["next_attempt_at"] is None
    assert len(receiver.requests) == len(FAST) + 1


async def test_a_private_target_is_refused_at_delivery_too(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    # Made while private targets were allowed; delivered by an app that refuses them.
    allowing = await webhook_api(make_api, settings_for)
    hook = await subscribe(allowing, receiver.url)
    await allowing.client.close()
    settings = settings_for(
        database_url=allowing.settings.database_url,
        SECRET_KEY=allowing.settings.secret_key.value,
    )
    api = await make_api(container=container_for(settings))
    hook["manager"] = await api.api_key("webhooks:manage")
    await fail_login(api)

    await until_status(api, hook, "failed")
    [delivery] = await deliveries(api, hook)
    assert delivery["last_status_code"] is None
    assert delivery["last_error"].startswith("refused target")
    assert receiver.requests == []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_nothing_is_lost_across_a_restart_with_the_receiver_down_at_first(
    make_api: MakeApi, settings_for: Callable[..., Settings]
) -> None:
    port = free_port()
    # A retry a second later: long enough to stop this server before it comes due.
    first = await webhook_api(make_api, settings_for, schedule=(timedelta(seconds=1),) * 3)
    hook = await subscribe(first, f"http://127.0.0.1:{port}/hook")
    await fail_login(first)
    # The receiver is down: the first attempt fails and a retry is queued.
    await until_attempted(first, hook)
    await first.client.close()  # the server stops

    receiver = Receiver()
    receiver.secrets = [hook["secret"]]
    await receiver.start(port)
    try:
        second = await webhook_api(make_api, settings_for, beside=first)
        hook["manager"] = await second.api_key("webhooks:manage")
        await until(lambda: len(receiver.verified) == 1, "the delivery after the restart")
        await until_status(second, hook, "delivered")
        [delivery] = await deliveries(second, hook)
        assert delivery["attempts"] >= 2
    finally:
        await receiver.stop()


async def until_attempted(api: Api, hook: dict[str, Any]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await deliveries(api, hook)
        if found and found[0]["attempts"] >= 1 and found[0]["last_error"]:
            assert found[0]["status"] == "pending"
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never attempted: {found}")
        await asyncio.sleep(0.05)


async def test_two_servers_on_one_database_deliver_each_attempt_once(
    make_api: MakeApi, settings_for: Callable[..., Settings], receiver: Receiver
) -> None:
    one = await webhook_api(make_api, settings_for)
    two = await webhook_api(make_api, settings_for, beside=one)
    hook = await subscribe(one, receiver.url)
    events = 30
    await asyncio.gather(
        *(fail_login(one if i % 2 else two, f"n{i}@example.com") for i in range(events))
    )

    await until(lambda: len(receiver.requests) >= events, "every delivery")
    await until_status(one, hook, "delivered")
    ids = [headers["webhook-id"] for headers, _ in receiver.requests]
    assert len(ids) == len(set(ids)) == events
