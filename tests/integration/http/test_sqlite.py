"""The same app on the embedded SQLite database: a smoke test of the main flows."""

from __future__ import annotations

import asyncio

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
