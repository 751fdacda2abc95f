"""The same app on the embedded SQLite database: a smoke test of the main flows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from aiohttp.test_utils import TestClient, TestServer

from identity.entrypoints.http.app import create_app
from identity.entrypoints.settings import Settings
from tests.integration.http.conftest import Api, problem_of


async def test_health_on_sqlite(sqlite_api: Api) -> None:
    response = await sqlite_api.get("/health")

    assert response.status == 200
    assert (await response.json())["checks"]["database"] == "ok"


async def test_the_lifecycle_on_sqlite(sqlite_api: Api) -> None:
    api = sqlite_api
    email = "lite@example.com"
    registered = await api.register_verified(email)
    assert registered["user"]["is_verified"] is True

    tokens = await api.login(email)
    rotated = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    assert rotated.status == 200
    new = await rotated.json()
    assert new["refresh_token"] != tokens["refresh_token"]
    assert (await api.me(new["access_token"])).status == 200

    logout = await api.post("/auth/logout", {"refresh_token": new["refresh_token"]})
    assert logout.status == 200
    after = await api.post("/auth/refresh-token", {"refresh_token": new["refresh_token"]})
    await problem_of(after, 401, "invalid_token")


async def test_concurrent_refreshes_on_sqlite_share_one_successor(sqlite_api: Api) -> None:
    tokens = await sqlite_api.register_verified("lite-race@example.com")

    responses = await asyncio.gather(
        *(
            sqlite_api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
            for _ in range(6)
        )
    )

    assert [r.status for r in responses] == [200] * 6
    assert len({(await r.json())["refresh_token"] for r in responses}) == 1


async def test_an_app_on_sqlite_stops_its_jobs_without_cancelling_them(
    settings_for: Callable[..., Settings],
    migrated_sqlite_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Stopping right after start, while every job is in its first run, once
    cancelled the jobs inside their transactions; tearing those connections
    down under the cancellation could hang aiosqlite for good (CI saw it)."""
    caplog.set_level(logging.WARNING, logger="identity.server")
    settings = settings_for(database_url=migrated_sqlite_url)

    for _ in range(30):
        async with TestClient(TestServer(create_app(settings))) as client:
            assert (await client.get("/health")).status == 200
            # Leaving the block stops the app while its jobs are in their first runs.

    assert [r.getMessage() for r in caplog.records if hasattr(r, "job")] == []
