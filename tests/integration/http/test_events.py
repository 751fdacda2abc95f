"""Security events over HTTP: each type driven by its real endpoint and read back,
none for failed requests, and the two lists that show them."""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from tests.integration.http.conftest import PASSWORD, Api, MakeApi, other_code, problem_of

UA = {"User-Agent": "events-test/1.0"}
NEW_PASSWORD = "a brand new passphrase 42"


_READERS: weakref.WeakKeyDictionary[Api, str] = weakref.WeakKeyDictionary()


async def events(api: Api, **query: str) -> list[dict[str, Any]]:
    """Every event of the default tenant matching ``query``, newest first."""
    if api not in _READERS:  # one key per app: minting one is itself an event
        _READERS[api] = await api.api_key("events:read", name="reader")
    reader = _READERS[api]
    response = await api.get("/admin/events", token=reader, params={"limit": "200", **query})
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["next_cursor"] is None
    return list(body["items"])


async def one(api: Api, type: str, **query: str) -> dict[str, Any]:
    found = await events(api, type=type, **query)
    assert len(found) == 1, found
    event = found[0]
    assert set(event) == {
        "id",
        "type",
        "occurred_at",
        "tenant",
        "user_id",
        "session_id",
        "ip",
        "user_agent",
        "data",
    }
    assert event["type"] == type and event["tenant"] == "default"
    return event


async def current_session(api: Api, access_token: str) -> str:
    listed = await (await api.get("/auth/sessions", token=access_token)).json()
    return str(next(s["id"] for s in listed["sessions"] if s["current"]))


async def test_register_records_user_created_with_the_request_client(api: Api) -> None:
    response = await api.post(
        "/auth/register", {"email": "ev-created@example.com", "password": PASSWORD}, headers=UA
    )
    assert response.status == 202
    await api.next_mail("ev-created@example.com")  # the worker created the account
    event = await one(api, "user.created")
    assert uuid.UUID(event["user_id"])
    assert event["ip"] == "127.0.0.1" and event["user_agent"] == "events-test/1.0"
    assert event["data"] == {"has_password": True}
    assert PASSWORD not in str(event)


async def test_verify_otp_records_user_verified_and_login_succeeded(api: Api) -> None:
    tokens = await api.register_verified("ev-verified@example.com")
    verified = await one(api, "user.verified")
    login = await one(api, "login.succeeded")
    session_id = await current_session(api, tokens["access_token"])
    assert verified["user_id"] == login["user_id"] == tokens["user"]["id"]
    assert verified["session_id"] == login["session_id"] == session_id
    assert login["data"] == {"method": "otp", "aal": "aal1"}


async def test_password_login_records_login_succeeded(api: Api) -> None:
    await api.register_verified("ev-login@example.com")
    tokens = await api.login("ev-login@example.com", headers=UA)
    found = await events(api, type="login.succeeded")
    assert [e["data"]["method"] for e in found] == ["password", "otp"]  # newest first
    assert found[0]["session_id"] == await current_session(api, tokens["access_token"])
    assert found[0]["user_agent"] == "events-test/1.0"


async def test_login_failed_for_a_wrong_password_and_for_an_unknown_email(api: Api) -> None:
    account = await api.register_verified("ev-failed@example.com")
    for email in ("ev-failed@example.com", "nobody-here@example.com"):
        response = await api.post("/auth/login", {"email": email, "password": "wrong password"})
        await problem_of(response, 401, "invalid_credentials")
    unknown, wrong = await events(api, type="login.failed")
    assert wrong["user_id"] == account["user"]["id"]
    assert wrong["data"] == {"method": "password", "reason": "wrong_password"}
    assert unknown["user_id"] is None
    assert unknown["data"] == {"method": "password", "reason": "unknown_email"}
    assert "wrong password" not in str([unknown, wrong])
    assert "nobody-here" not in str(unknown)


async def test_a_wrong_login_code_records_login_failed(api: Api) -> None:
    account = await api.register_verified("ev-otp@example.com")
    code = await api.request_code("ev-otp@example.com", "login")
    body = {"email": "ev-otp@example.com", "otp_code": other_code(code), "purpose": "login"}
    await problem_of(await api.post("/auth/verify-otp", body), 400, "otp_invalid")
    event = await one(api, "login.failed")
    assert event["user_id"] == account["user"]["id"]
    assert event["data"] == {"method": "otp", "reason": "otp_invalid"}
    assert code not in str(event) and other_code(code) not in str(event)


async def test_a_reused_refresh_token_records_reuse_and_the_revoked_session(
    make_api: MakeApi,
) -> None:
    api = await make_api(REFRESH_REUSE_GRACE="1ms")
    tokens = await api.register_verified("ev-reuse@example.com")
    session_id = await current_session(api, tokens["access_token"])
    first = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    assert first.status == 200
    assert await events(api, type="refresh_token.reused") == []  # the happy path records nothing
    again = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    await problem_of(again, 401, "refresh_token_reused")
    reused = await one(api, "refresh_token.reused")
    revoked = await one(api, "session.revoked")
    assert reused["session_id"] == revoked["session_id"] == session_id
    assert revoked["data"] == {"reason": "refresh_token_reused"}


async def test_logout_records_session_revoked_once(api: Api) -> None:
    tokens = await api.register_verified("ev-logout@example.com")
    session_id = await current_session(api, tokens["access_token"])
    for _ in range(2):  # idempotent: the second call ends nothing and records nothing
        response = await api.post("/auth/logout", {"refresh_token": tokens["refresh_token"]})
        assert response.status == 200
    event = await one(api, "session.revoked")
    assert event["session_id"] == session_id
    assert event["data"] == {"reason": "logout", "by_session_id": session_id}


async def test_logout_all_records_one_event_per_ended_session(api: Api) -> None:
    tokens = await api.register_verified("ev-all@example.com")
    others = [await api.login("ev-all@example.com") for _ in range(2)]
    caller = await current_session(api, tokens["access_token"])
    sessions = {caller} | {await current_session(api, o["access_token"]) for o in others}
    response = await api.post("/auth/logout-all", token=tokens["access_token"])
    assert (await response.json())["sessions_revoked"] == 3
    revoked = await events(api, type="session.revoked")
    assert sorted(e["session_id"] for e in revoked) == sorted(sessions)
    for event in revoked:
        assert event["data"] == {"reason": "logout_all", "by_session_id": caller}
        assert event["user_id"] == tokens["user"]["id"]


async def test_revoking_one_session_records_it(api: Api) -> None:
    tokens = await api.register_verified("ev-one@example.com")
    other = await api.login("ev-one@example.com")
    other_id = await current_session(api, other["access_token"])
    response = await api.delete(f"/auth/sessions/{other_id}", token=tokens["access_token"])
    assert response.status == 204
    event = await one(api, "session.revoked")
    caller = await current_session(api, tokens["access_token"])
    assert event["session_id"] == other_id
    assert event["data"] == {"reason": "revoked_by_user", "by_session_id": caller}


async def test_change_password_records_the_change_and_the_other_sessions_ended(api: Api) -> None:
    tokens = await api.register_verified("ev-change@example.com")
    other = await api.login("ev-change@example.com")
    other_id = await current_session(api, other["access_token"])
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    response = await api.post("/auth/change-password", body, token=tokens["access_token"])
    assert response.status == 200
    changed = await one(api, "password.changed")
    revoked = await one(api, "session.revoked")
    caller = await current_session(api, tokens["access_token"])
    assert changed["session_id"] == caller and revoked["session_id"] == other_id
    assert revoked["data"] == {"reason": "password_changed", "by_session_id": caller}
    assert NEW_PASSWORD not in str([changed, revoked]) and PASSWORD not in str(changed)


async def test_reset_password_records_password_reset(api: Api) -> None:
    account = await api.register_verified("ev-reset@example.com")
    session_id = await current_session(api, account["access_token"])
    code = await api.request_code("ev-reset@example.com", "password_reset")
    response = await api.post(
        "/auth/reset-password",
        {"email": "ev-reset@example.com", "otp_code": code, "new_password": NEW_PASSWORD},
    )
    assert response.status == 200
    event = await one(api, "password.reset")
    assert event["user_id"] == account["user"]["id"] and event["data"] == {}
    assert code not in str(await events(api))
    revoked = await one(api, "session.revoked")
    assert revoked["session_id"] == session_id and revoked["data"] == {"reason": "password_reset"}


async def test_api_keys_created_and_revoked_over_http_are_recorded(api: Api) -> None:
    manager = await api.api_key("api-keys:manage", "users:read")
    created = await (
        await api.post("/admin/api-keys", {"name": "ci", "scopes": ["users:read"]}, token=manager)
    ).json()
    response = await api.delete(f"/admin/api-keys/{created['id']}", token=manager)
    assert response.status == 204
    made = [e for e in await events(api, type="api_key.created") if e["data"]["name"] == "ci"]
    assert len(made) == 1
    assert made[0]["data"]["key_id"] == created["id"]
    assert made[0]["data"]["scopes"] == ["users:read"]
    assert uuid.UUID(made[0]["data"]["by_key_id"]) == uuid.UUID(hex=manager.split("_")[1])
    revoked = await one(api, "api_key.revoked")
    assert revoked["data"]["key_id"] == created["id"]
    assert created["key"] not in str(await events(api))


async def test_failed_requests_record_nothing(api: Api) -> None:
    tokens = await api.register_verified("ev-nothing@example.com")
    before = await events(api)
    weak = {"current_password": PASSWORD, "new_password": "password"}
    await problem_of(
        await api.post("/auth/change-password", weak, token=tokens["access_token"]),
        422,
        "validation_error",
    )
    wrong = {"current_password": "not it at all", "new_password": NEW_PASSWORD}
    await problem_of(
        await api.post("/auth/change-password", wrong, token=tokens["access_token"]),
        401,
        "invalid_credentials",
    )
    await problem_of(
        await api.post("/auth/register", {"email": "not an email"}), 422, "validation_error"
    )
    await problem_of(
        await api.post("/auth/logout", {"refresh_token": "garbage"}), 401, "invalid_token"
    )
    assert await events(api) == before


async def test_lists_page_newest_first_filter_and_show_users_only_their_own(api: Api) -> None:
    ada = await api.register_verified("ev-ada@example.com")
    bob = await api.register_verified("ev-bob@example.com")
    for _ in range(2):
        await api.login("ev-ada@example.com")
    reader = await api.api_key("events:read")
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "2", "user_id": ada["user"]["id"]}
        if cursor is not None:
            params["cursor"] = cursor
        page = await (await api.get("/admin/events", token=reader, params=params)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    # created, verified, three logins (the first at the very moment of verification):
    # newest first, each once.
    types = [e["type"] for e in seen]
    assert types[:2] == ["login.succeeded"] * 2 and types[-1] == "user.created"
    assert sorted(types[2:4]) == ["login.succeeded", "user.verified"]
    assert len({e["id"] for e in seen}) == 5
    moments = [e["occurred_at"] for e in seen]
    assert moments == sorted(moments, reverse=True)

    mine = await (await api.get("/auth/me/events", token=bob["access_token"])).json()
    assert {e["user_id"] for e in mine["items"]} == {bob["user"]["id"]}
    assert len(mine["items"]) == 3

    await problem_of(
        await api.get("/admin/events", token=reader, params={"cursor": "nonsense"}),
        422,
        "validation_error",
    )
    await problem_of(
        await api.get("/admin/events", token=reader, params={"limit": "0"}), 422, "validation_error"
    )
    await problem_of(
        await api.get("/admin/events", token=reader, params={"type": "user.exploded"}),
        422,
        "validation_error",
    )
    other = await api.api_key("users:read")
    await problem_of(await api.get("/admin/events", token=other), 403, "insufficient_scope")
    await problem_of(await api.get("/auth/me/events"), 401, "invalid_token")


async def test_the_client_address_follows_the_trusted_proxy_rules(make_api: MakeApi) -> None:
    api = await make_api(TRUSTED_PROXIES="127.0.0.1/32")
    await api.post(
        "/auth/login",
        {"email": "ev-proxy@example.com", "password": "whatever it is"},
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    event = await one(api, "login.failed")
    assert event["ip"] == "203.0.113.7"
