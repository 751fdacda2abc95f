"""/admin/users over HTTP on Postgres: every endpoint, its scope, tenants, pagination, races."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import func, select

from identity.adapters.sqlalchemy import tables as t
from tests.integration.http.conftest import PASSWORD, Api, problem_of

USERS = "/admin/users"


async def create_user(api: Api, key: str, email: str, **body: Any) -> dict[str, Any]:
    response = await api.post(USERS, {"email": email, **body}, token=key)
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def sessions_in_database(api: Api, user_id: str) -> int:
    async with api.container.engine().connect() as connection:
        query = select(func.count()).select_from(t.sessions)
        count = await connection.scalar(query.where(t.sessions.c.user_id == uuid.UUID(user_id)))
    return int(count or 0)


async def test_create_read_find_update_and_delete_a_user(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    created = await create_user(
        api, key, "  Ada@Example.COM ", password=PASSWORD, full_name="Ada", verified=True
    )
    assert created["email"] == "Ada@example.com"
    assert created["is_verified"] and created["is_active"] and created["has_password"]
    assert created["tenant"] == "default" and created["identities"] == []
    assert created["mfa_enabled"] is False and created["last_login_at"] is None
    assert "password" not in str(created).replace("has_password", "")

    response = await api.post(USERS, {"email": "ada@example.com"}, token=key)
    await problem_of(response, 409, "email_taken")

    user = f"{USERS}/{created['id']}"
    assert await (await api.get(user, token=key)).json() == created
    tokens = await api.login("ada@example.com")  # verified at creation: no code needed
    assert tokens["user"]["id"] == created["id"]
    read = await (await api.get(user, token=key)).json()
    assert read["last_login_at"] is not None

    found = await (await api.get(USERS, token=key, params={"email": "ADA@example.com"})).json()
    assert [item["id"] for item in found["items"]] == [created["id"]]
    assert found["next_cursor"] is None
    none = await (await api.get(USERS, token=key, params={"email": "bob@example.com"})).json()
    assert none == {"items": [], "next_cursor": None}

    response = await api.patch(user, {"full_name": "Ada L.", "is_verified": False}, token=key)
    assert response.status == 200, await response.text()
    patched = await response.json()
    assert (patched["full_name"], patched["is_verified"]) == ("Ada L.", False)
    response = await api.post("/auth/login", {"email": "ada@example.com", "password": PASSWORD})
    await problem_of(response, 403, "email_not_verified")

    assert (await api.delete(user, token=key)).status == 204
    await problem_of(await api.get(user, token=key), 404, "not_found")
    await problem_of(await api.delete(user, token=key), 404, "not_found")
    await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
    response = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    await problem_of(response, 401, "invalid_token")
    assert await sessions_in_database(api, created["id"]) == 0
    # The address is free again.
    again = await api.register_verified("ada@example.com")
    assert again["user"]["id"] != created["id"]


async def test_a_user_created_without_password_or_verification(api: Api) -> None:
    key = await api.api_key("users:write")
    created = await create_user(api, key, "otp-only@example.com")
    assert not created["has_password"] and not created["is_verified"]
    assert api.mail_for("otp-only@example.com") == []  # the back end decides what to tell
    response = await api.post(
        USERS, {"email": "weak@example.com", "password": "password"}, token=key
    )
    body = await problem_of(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["password"]


async def test_disabling_ends_every_session_at_once(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    first = await api.register_verified("bob@example.com")
    second = await api.login("bob@example.com")
    user = f"{USERS}/{first['user']['id']}"

    response = await api.patch(user, {"is_active": False}, token=key)
    assert (await response.json())["is_active"] is False
    for tokens in (first, second):
        await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
        response = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
        assert response.status in (401, 403), await response.text()
    sessions = await (await api.get(f"{user}/sessions", token=key)).json()
    assert sessions == {"items": []}
    response = await api.post("/auth/login", {"email": "bob@example.com", "password": PASSWORD})
    await problem_of(response, 403, "account_disabled")

    await api.patch(user, {"is_active": True}, token=key)
    fresh = await api.login("bob@example.com")
    assert (await api.me(fresh["access_token"])).status == 200
    await problem_of(await api.me(first["access_token"]), 401, "invalid_token")  # still ended


async def test_sessions_are_listed_without_tokens_and_ended_by_force(api: Api) -> None:
    reader = await api.api_key("users:read")
    ender = await api.api_key("sessions:write")
    first = await api.register_verified("cy@example.com")
    second = await api.login("cy@example.com", headers={"User-Agent": "phone"})
    user = f"{USERS}/{first['user']['id']}"

    listed = await (await api.get(f"{user}/sessions", token=reader)).json()
    assert len(listed["items"]) == 2
    assert {item["user_agent"] for item in listed["items"]} >= {"phone"}
    for secret in (first["refresh_token"], second["access_token"]):
        assert secret not in str(listed)

    response = await api.post(f"{user}/logout", token=ender)
    assert response.status == 200
    assert await response.json() == {"sessions_revoked": 2}
    for tokens in (first, second):
        await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
    assert await (await api.post(f"{user}/logout", token=ender)).json() == {"sessions_revoked": 0}


async def test_every_endpoint_refuses_a_key_without_its_scope(api: Api) -> None:
    everything_but = {
        scope: await api.api_key(*({"users:read", "users:write", "sessions:write"} - {scope}))
        for scope in ("users:read", "users:write", "sessions:write")
    }
    target = (await api.register_verified("dee@example.com"))["user"]["id"]
    user = f"{USERS}/{target}"
    calls: list[tuple[str, str, str, Any]] = [
        ("users:read", "GET", USERS, None),
        ("users:read", "GET", user, None),
        ("users:read", "GET", f"{user}/sessions", None),
        ("users:write", "POST", USERS, {"email": "new@example.com"}),
        ("users:write", "PATCH", user, {"is_active": False}),
        ("users:write", "DELETE", user, None),
        ("sessions:write", "POST", f"{user}/logout", None),
    ]
    tokens = await api.login("dee@example.com")
    for scope, method, path, body in calls:
        response = await api.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {everything_but[scope]}"}
        )
        await problem_of(response, 403, "insufficient_scope")
        for wrong in (None, tokens["access_token"]):
            headers = {"Authorization": f"Bearer {wrong}"} if wrong else {}
            response = await api.client.request(method, path, json=body, headers=headers)
            await problem_of(response, 401, "invalid_api_key")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # Nothing was changed by the refusals.
    assert (await api.me(tokens["access_token"])).status == 200
    reader = everything_but["users:write"]
    found = await (await api.get(USERS, token=reader, params={"email": "new@example.com"})).json()
    assert found["items"] == []


async def test_another_tenants_users_are_not_found(api: Api) -> None:
    await api.container.tenant_admin().create("acme")
    acme = await api.api_key("users:read", "users:write", "sessions:write", tenant="acme")
    ours = await api.api_key("users:read")
    victim = await api.register_verified("eve@example.com")
    user = f"{USERS}/{victim['user']['id']}"

    for method, path, body in (
        ("GET", user, None),
        ("PATCH", user, {"is_active": False}),
        ("DELETE", user, None),
        ("GET", f"{user}/sessions", None),
        ("POST", f"{user}/logout", None),
    ):
        response = await api.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {acme}"}
        )
        await problem_of(response, 404, "not_found")
    listed = await (await api.get(USERS, token=acme)).json()
    assert listed["items"] == []
    found = await (await api.get(USERS, token=acme, params={"email": "eve@example.com"})).json()
    assert found["items"] == []
    response = await api.get(USERS, token=acme, headers={"X-Tenant": "default"})
    await problem_of(response, 403, "insufficient_scope")
    # Untouched, and the same address is free in acme.
    assert (await api.me(victim["access_token"])).status == 200
    assert (await (await api.get(user, token=ours)).json())["is_active"] is True
    assert (await create_user(api, acme, "eve@example.com"))["tenant"] == "acme"


async def test_bad_input_is_refused_clearly_and_changes_nothing(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    for path in (f"{USERS}/not-a-uuid", f"{USERS}/{uuid.uuid4()}", f"{USERS}/1/sessions"):
        await problem_of(await api.get(path, token=key), 404, "not_found")
    for params in ({"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"cursor": "junk!"}):
        body = await problem_of(
            await api.get(USERS, token=key, params=params), 422, "validation_error"
        )
        assert [error["field"] for error in body["errors"]] == list(params)
    response = await api.get(USERS, token=key, params={"email": "not an address"})
    await problem_of(response, 422, "validation_error")
    created = await create_user(api, key, "fay@example.com", role="admin", is_admin=True)
    assert "role" not in created  # unknown fields are ignored, as everywhere in the API
    user = f"{USERS}/{created['id']}"
    await problem_of(await api.patch(user, {}, token=key), 422, "validation_error")
    await problem_of(await api.patch(user, {"is_active": "no"}, token=key), 422, "validation_error")
    response = await api.post(
        USERS, {"email": "a@example.com", "full_name": "x" * 70_000}, token=key
    )
    assert response.status == 413
    response = await api.post(
        USERS, data="{", headers={"Content-Type": "application/json"}, token=key
    )
    await problem_of(response, 400, "malformed_json")
    assert await (await api.get(user, token=key)).json() == created


async def walk(api: Api, key: str, path: str, limit: int) -> list[list[str]]:
    """Every page of a list, as lists of ids."""
    pages: list[list[str]] = []
    params: dict[str, Any] = {"limit": str(limit)}
    while True:
        response = await api.get(path, token=key, params=params)
        assert response.status == 200, await response.text()
        body = await response.json()
        pages.append([item["id"] for item in body["items"]])
        if body["next_cursor"] is None:
            return pages
        params["cursor"] = body["next_cursor"]


async def test_keyset_pages_walk_every_user_once_in_creation_order(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    created = [(await create_user(api, key, f"u{n}@example.com"))["id"] for n in range(7)]
    pages = await walk(api, key, USERS, 3)
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [user for page in pages for user in page] == created
    whole = await (await api.get(USERS, token=key)).json()  # default limit 50
    assert [item["id"] for item in whole["items"]] == created and whole["next_cursor"] is None


async def test_pagination_under_concurrent_inserts_has_no_duplicate_and_no_gap(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    before = {(await create_user(api, key, f"old{n}@example.com"))["id"] for n in range(10)}
    page_read = asyncio.Event()
    inserted = asyncio.Event()
    added: set[str] = set()
    inserts = 6

    async def insert_between_pages() -> None:
        for n in range(inserts):
            await page_read.wait()
            page_read.clear()
            added.add((await create_user(api, key, f"new{n}@example.com"))["id"])
            inserted.set()

    async def walk_while_inserting() -> list[str]:
        seen: list[str] = []
        params: dict[str, Any] = {"limit": "2"}
        while True:
            body = await (await api.get(USERS, token=key, params=params)).json()
            seen += [item["id"] for item in body["items"]]
            if len(added) < inserts:  # one insert lands between every two pages
                page_read.set()
                await inserted.wait()
                inserted.clear()
            if body["next_cursor"] is None:
                return seen
            params["cursor"] = body["next_cursor"]

    seen, _ = await asyncio.gather(walk_while_inserting(), insert_between_pages())
    assert len(added) == inserts
    assert len(seen) == len(set(seen)), "a user was listed twice"
    assert before <= set(seen), "a user that existed before the walk was skipped"
    assert set(seen) <= before | added


async def race_delete_with_logins(api: Api, key: str, email: str) -> None:
    """One admin delete and two logins of the same user, released together."""
    user = await create_user(api, key, email, password=PASSWORD, verified=True)
    barrier = asyncio.Barrier(3)

    async def log_in() -> Any:
        await barrier.wait()
        return await api.post("/auth/login", {"email": email, "password": PASSWORD})

    logins = [asyncio.create_task(log_in()) for _ in range(2)]
    await barrier.wait()
    deleted = await api.delete(f"{USERS}/{user['id']}", token=key)
    answers = await asyncio.gather(*logins)
    assert deleted.status == 204, await deleted.text()
    for answer in answers:
        assert answer.status in (200, 401), await answer.text()
        if answer.status == 200:
            tokens = await answer.json()
            await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
    assert await sessions_in_database(api, user["id"]) == 0, "an orphan session survived"


async def test_delete_racing_login_leaves_no_orphan_session_and_no_500(api: Api) -> None:
    key = await api.api_key("users:write")
    for round_ in range(4):
        await race_delete_with_logins(api, key, f"race{round_}@example.com")


async def test_the_admin_api_works_on_the_embedded_sqlite_database(sqlite_api: Api) -> None:
    api = sqlite_api
    key = await api.api_key("users:read", "users:write")
    created = [
        await create_user(api, key, f"lite{n}@example.com", password=PASSWORD, verified=True)
        for n in range(3)
    ]
    tokens = await api.login("lite0@example.com")
    pages = await walk(api, key, USERS, 2)
    assert [user for page in pages for user in page] == [user["id"] for user in created]
    read = await (await api.get(f"{USERS}/{created[0]['id']}", token=key)).json()
    assert read["last_login_at"] is not None
    assert (await api.delete(f"{USERS}/{created[0]['id']}", token=key)).status == 204
    await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
    assert await sessions_in_database(api, created[0]["id"]) == 0


async def active_sessions_in_database(api: Api, user_id: str) -> int:
    async with api.container.engine().connect() as connection:
        query = select(func.count()).select_from(t.sessions)
        count = await connection.scalar(
            query.where(
                t.sessions.c.user_id == uuid.UUID(user_id), t.sessions.c.revoked_at.is_(None)
            )
        )
    return int(count or 0)


async def test_disable_racing_login_leaves_no_live_session(api: Api) -> None:
    key = await api.api_key("users:write")
    for round_ in range(3):
        email = f"toggle{round_}@example.com"
        user = await create_user(api, key, email, password=PASSWORD, verified=True)
        barrier = asyncio.Barrier(3)

        async def log_in(address: str = email, gate: asyncio.Barrier = barrier) -> Any:
            await gate.wait()
            return await api.post("/auth/login", {"email": address, "password": PASSWORD})

        logins = [asyncio.create_task(log_in()) for _ in range(2)]
        await barrier.wait()
        response = await api.patch(f"{USERS}/{user['id']}", {"is_active": False}, token=key)
        assert response.status == 200, await response.text()
        for answer in await asyncio.gather(*logins):
            assert answer.status in (200, 401, 403), await answer.text()
        assert await active_sessions_in_database(api, user["id"]) == 0


async def test_admin_changes_are_recorded_as_security_events(api: Api) -> None:
    key = await api.api_key("users:write", "sessions:write", "events:read")
    user = await create_user(api, key, "evt@example.com", password=PASSWORD, verified=True)
    await api.login("evt@example.com")
    path = f"{USERS}/{user['id']}"
    await api.patch(path, {"full_name": "Evt"}, token=key)
    await api.patch(path, {"is_active": False}, token=key)
    await api.post(f"{path}/logout", token=key)  # nothing left to end: no event
    assert (await api.delete(path, token=key)).status == 204

    response = await api.get("/admin/events", token=key, params={"user_id": user["id"]})
    events = (await response.json())["items"]
    kinds = [event["type"] for event in reversed(events)]  # oldest first
    # Events of one transaction share their time: their order among them is open.
    assert sorted(kinds) == sorted(
        [
            "user.created",
            "login.succeeded",
            "user.updated",
            "user.disabled",
            "session.revoked",
            "user.deleted",
        ]
    )
    assert (kinds[0], kinds[-1]) == ("user.created", "user.deleted")
    revoked = next(event for event in events if event["type"] == "session.revoked")
    assert revoked["data"] == {"reason": "account_disabled"}  # an API key has no session
    assert revoked["session_id"] is not None
    updated = next(event for event in events if event["type"] == "user.updated")
    assert updated["data"]["fields"] == ["full_name"]
