"""POST /admin/users/import, GET /admin/imports/{id} and GET /admin/users/export (API.md §18)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import bcrypt
import pyotp

from tests.integration.http.conftest import PASSWORD, Api, MakeApi, problem_of

NDJSON = {"Content-Type": "application/x-ndjson"}
OLD_PASSWORD = "the old system's password"


def _lines(records: list[Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


async def _start(api: Api, key: str, body: bytes) -> str:
    response = await api.post("/admin/users/import", data=body, token=key, headers=NDJSON)
    answer = await response.json()
    assert response.status == 202, answer
    return str(answer["import_id"])


async def _finished(api: Api, key: str, import_id: str) -> dict[str, Any]:
    """Poll the run until it is no longer running (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + 60
    while True:
        response = await api.get(f"/admin/imports/{import_id}", token=key)
        progress = await response.json()
        assert response.status == 200, progress
        if progress["state"] != "running":
            return dict(progress)
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.05)


async def test_an_import_through_the_api_while_sign_ins_go_on(api: Api) -> None:
    key = await api.api_key("users:write")
    await api.register_verified("steady@example.com")
    old_hash = bcrypt.hashpw(OLD_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    records: list[Any] = [
        {"email": f"user{i}@example.com", "email_verified": True, "password_hash": old_hash}
        for i in range(3000)
    ]
    body = _lines(records[:1500]) + b"{broken\n" + _lines(records[1500:])
    body += json.dumps({"email": "user1@example.com"}).encode() + b"\n"

    stop = asyncio.Event()
    outcomes: list[int] = []

    async def sign_ins() -> None:
        while not stop.is_set():
            response = await api.post(
                "/auth/login", {"email": "steady@example.com", "password": PASSWORD}
            )
            outcomes.append(response.status)
            await response.read()

    signing_in = asyncio.create_task(sign_ins())
    import_id = await _start(api, key, body)
    progress = await _finished(api, key, import_id)
    stop.set()
    await signing_in

    assert progress["state"] == "done"
    assert (progress["imported"], progress["skipped"], progress["failed"]) == (3000, 0, 2)
    assert progress["total"] == 3002
    assert [e["line"] for e in progress["errors"]] == [1501, 3002]
    assert outcomes and set(outcomes) == {200}
    tokens = await api.login("user2999@example.com", OLD_PASSWORD)
    assert tokens["user"]["email"] == "user2999@example.com"
    # The same body again imports nothing twice.
    again = await _finished(api, key, await _start(api, key, body))
    assert (again["imported"], again["skipped"]) == (0, 3000)


async def test_scopes_media_type_and_unknown_runs(api: Api) -> None:
    reader = await api.api_key("users:read")
    writer = await api.api_key("users:write")
    response = await api.post("/admin/users/import", data=b"{}\n", token=reader, headers=NDJSON)
    await problem_of(response, 403, "insufficient_scope")
    response = await api.post(
        "/admin/users/import",
        data=b"a,b\n",
        token=writer,
        headers={"Content-Type": "text/csv"},
    )
    await problem_of(response, 415, "unsupported_media_type")
    response = await api.get("/admin/imports/00000000-0000-0000-0000-000000000000", token=writer)
    await problem_of(response, 404, "not_found")
    await problem_of(await api.get("/admin/users/export", token=writer), 403, "insufficient_scope")


async def _export(api: Api, key: str) -> list[dict[str, Any]]:
    response = await api.get("/admin/users/export", token=key)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in (await response.text()).splitlines()]


async def test_round_trip_between_two_live_servers(
    api: Api, make_api: MakeApi, migrated_sqlite_url: str
) -> None:
    # On the first server: a password user with TOTP and a plain password user.
    tokens = await api.register_verified("totp@example.com")
    access = tokens["access_token"]
    enrolled = await (await api.post("/auth/mfa/totp/enroll", token=access)).json()
    secret = enrolled["secret"]
    response = await api.post(
        "/auth/mfa/totp/confirm", {"code": pyotp.TOTP(secret).now()}, token=access
    )
    assert response.status == 200, await response.text()
    plain = await api.register_verified("plain@example.com")

    public = await _export(api, await api.api_key("users:read"))
    assert {u["email"] for u in public} == {"totp@example.com", "plain@example.com"}
    assert all("password_hash" not in u and "totp" not in u for u in public)
    full = await _export(api, await api.api_key("users:read", "users:export"))
    assert all(u["password_hash"].startswith("bcrypt_sha256$") for u in full)

    # Into an empty deployment (another database, another process's worth of app).
    other = await make_api(database_url=migrated_sqlite_url)
    key = await other.api_key("users:write")
    progress = await _finished(other, key, await _start(other, key, _lines(full)))
    assert (progress["imported"], progress["failed"]) == (2, 0), progress

    moved = await other.login("plain@example.com")
    assert moved["user"]["id"] == plain["user"]["id"]
    response = await other.post("/auth/login", {"email": "totp@example.com", "password": PASSWORD})
    first = await response.json()
    assert response.status == 200 and first["mfa_required"] is True, first
    response = await other.post(
        "/auth/mfa/verify", {"mfa_token": first["mfa_token"], "code": pyotp.TOTP(secret).now()}
    )
    second = await response.json()
    assert response.status == 200, second
    assert second["user"]["id"] == tokens["user"]["id"]


async def test_metadata_is_on_the_admin_user(api: Api) -> None:
    key = await api.api_key("users:write", "users:read")
    body = _lines(
        [
            {"email": "meta@example.com", "app_metadata": {"plan": "pro"}, "user_metadata": {}},
            {"email": "none@example.com"},
        ]
    )
    progress = await _finished(api, key, await _start(api, key, body))
    assert progress["imported"] == 2
    found = await (await api.get("/admin/users", token=key)).json()
    ids = {item["email"]: item["id"] for item in found["items"]}
    assert all(item.get("app_metadata") is None for item in found["items"]), found
    meta = await (await api.get(f"/admin/users/{ids['meta@example.com']}", token=key)).json()
    assert (meta["app_metadata"], meta["user_metadata"]) == ({"plan": "pro"}, {})
    none = await (await api.get(f"/admin/users/{ids['none@example.com']}", token=key)).json()
    assert none["app_metadata"] is None and none["user_metadata"] is None
