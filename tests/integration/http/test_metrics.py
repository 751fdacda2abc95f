"""GET /metrics: requests by route and status, logins by outcome, limits, outbox depth."""

from __future__ import annotations

import asyncio
import re
import time

from tests.integration.http.conftest import Api, MakeApi


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample, 0 when it is absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def metrics_text(api: Api) -> str:
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return await response.text()


async def test_metrics_count_requests_logins_and_rejections(make_api: MakeApi) -> None:
    api = await make_api(RATE_LIMIT_LOGIN="2/minute")
    await api.register_verified("ada@example.com")
    await api.login("ada@example.com")
    wrong = {"email": "ada@example.com", "password": "not the password"}
    assert (await api.post("/auth/login", wrong)).status == 401
    assert (await api.post("/auth/login", wrong)).status == 429
    for _ in range(3):
        assert (await api.delete("/auth/sessions/not-a-uuid")).status == 401

    text = await metrics_text(api)
    assert sample(text, "identity_logins_total", method="password", outcome="success") == 1
    assert (
        sample(text, "identity_logins_total", method="password", outcome="invalid_credentials") == 1
    )
    assert sample(text, "identity_logins_total", method="otp", outcome="success") == 1
    assert sample(text, "identity_rate_limit_rejections_total", route="/auth/login") == 1
    # Routes are counted by template, never by the raw path.
    templated = sample(
        text,
        "identity_http_requests_total",
        route="/auth/sessions/{session_id}",
        method="DELETE",
        status="401",
    )
    assert templated == 3
    assert "not-a-uuid" not in text
    assert sample(text, "identity_http_requests_total", route="/auth/register", status="202") == 1
    assert "identity_http_request_duration_seconds_bucket" in text


async def test_the_outbox_depth_is_reported(make_api: MakeApi) -> None:
    api = await make_api()
    text = await metrics_text(api)
    assert sample(text, "identity_email_outbox_pending") == 0
    await api.smtp.stop()  # mail cannot leave: it waits in the outbox
    assert (await api.post("/auth/register", {"email": "ada@example.com"})).status == 202
    # The code is issued (and its mail queued) just after the answer.
    deadline = asyncio.get_running_loop().time() + 5
    while sample(await metrics_text(api), "identity_email_outbox_pending") == 0:
        assert asyncio.get_running_loop().time() < deadline, "the mail was never queued"
        await asyncio.sleep(0.02)
    assert sample(await metrics_text(api), "identity_email_outbox_pending") == 1


async def test_background_job_runs_are_counted_with_their_last_success(make_api: MakeApi) -> None:
    api = await make_api()
    before = asyncio.get_running_loop().time()
    deadline = before + 5
    # Each job runs once at start; the outbox then every half second.
    while sample(await metrics_text(api), "identity_background_job_runs_total", job="outbox") < 2:
        assert asyncio.get_running_loop().time() < deadline, "the outbox job never ran twice"
        await asyncio.sleep(0.05)

    text = await metrics_text(api)
    for job in ("codes", "outbox", "webhooks", "keys", "purge"):
        assert sample(text, "identity_background_job_runs_total", job=job, outcome="ok") >= 1
        assert sample(text, "identity_background_job_runs_total", job=job, outcome="failed") == 0
        last = sample(text, "identity_background_job_last_success_timestamp_seconds", job=job)
        assert abs(last - time.time()) < 60, job
