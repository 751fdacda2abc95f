"""DELETE /auth/me and GET /auth/me/export on Postgres."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from identity.adapters.sqlalchemy import tables
from identity.domain.external_sign_in import LinkedIdentity
from tests.integration.http import test_mfa
from tests.integration.http.conftest import PASSWORD, Api, other_code, problem_of
from tests.integration.http.test_mfa import Mfa

mfa_app = test_mfa.mfa_app  # a fixture: an app whose clock the test moves

ME = "/auth/me"


async def test_deleting_with_the_password_erases_the_account_and_frees_the_email(api: Api) -> None:
    email = "gil@example.com"
    first = await api.register_verified(email)
    second = await api.login(email)
    access = first["access_token"]

    response = await api.delete(ME, token=access, json={"password": "not the password"})
    await problem_of(response, 401, "invalid_credentials")
    await problem_of(await api.delete(ME, token=access, json={}), 422, "validation_error")
    assert (await api.me(access)).status == 200  # refusals change nothing

    response = await api.delete(ME, token=access, json={"password": PASSWORD})
    assert response.status == 204, await response.text()
    for tokens in (first, second):
        await problem_of(await api.me(tokens["access_token"]), 401, "invalid_token")
        response = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
        await problem_of(response, 401, "invalid_token")
    response = await api.post("/auth/login", {"email": email, "password": PASSWORD})
    await problem_of(response, 401, "invalid_credentials")
    await problem_of(
        await api.delete(ME, token=access, json={"password": PASSWORD}), 401, "invalid_token"
    )

    again = await api.register_verified(email, password="a brand new passphrase")
    assert again["user"]["id"] != first["user"]["id"]


async def test_deleting_drops_the_mail_still_queued_for_the_address(api: Api) -> None:
    email = "hal@example.com"
    tokens = await api.register_verified(email)
    api.smtp.rcpt_replies[email] = "451 4.2.1 mailbox busy, try again later"
    response = await api.post("/auth/request-otp", {"email": email, "purpose": "login"})
    assert response.status == 202
    deadline = time.monotonic() + 5
    while await _queued_mail(api) != 1:  # the code's mail, refused once, waits for a retry
        assert time.monotonic() < deadline, "the code's mail was never queued"
        await asyncio.sleep(0.05)

    response = await api.delete(ME, token=tokens["access_token"], json={"password": PASSWORD})
    assert response.status == 204, await response.text()

    assert await _queued_mail(api) == 0


async def _queued_mail(api: Api) -> int:
    async with api.container.engine().connect() as connection:
        query = select(func.count()).where(tables.outbox.c.state == "pending")
        return int((await connection.execute(query)).scalar_one())


async def test_an_account_without_password_confirms_with_a_deletion_code(api: Api) -> None:
    email = "hal@example.com"
    tokens = await api.register_verified(email, password=None)
    access = tokens["access_token"]
    response = await api.delete(ME, token=access, json={"password": "anything at all"})
    await problem_of(response, 401, "invalid_credentials")

    code = await api.request_code(email, "account_deletion")
    response = await api.delete(ME, token=access, json={"otp_code": other_code(code)})
    await problem_of(response, 400, "otp_invalid")
    # A deletion code is good for nothing else.
    response = await api.post(
        "/auth/verify-otp", {"email": email, "otp_code": code, "purpose": "account_deletion"}
    )
    await problem_of(response, 422, "validation_error")
    assert (await api.me(access)).status == 200

    response = await api.delete(ME, token=access, json={"otp_code": code})
    assert response.status == 204, await response.text()
    await problem_of(await api.me(access), 401, "invalid_token")
    async with api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        assert await uow.accounts.get_by_email(tenant.id, email) is None


async def test_the_export_holds_everything_about_the_caller_and_no_secret(api: Api) -> None:
    email = "ivy@example.com"
    first = await api.register_verified(email, full_name="Ivy")
    second = await api.login(email, headers={"User-Agent": "laptop"})
    other = await api.register_verified("someone-else@example.com")
    user_id = uuid.UUID(first["user"]["id"])
    linked_at = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    async with api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        await uow.external_identities.add(
            LinkedIdentity(uuid.uuid4(), tenant.id, user_id, "google", "g-123", email, linked_at)
        )
        await uow.commit()

    response = await api.get(f"{ME}/export", token=second["access_token"])
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    export = await response.json()
    assert set(export) == {
        "exported_at",
        "profile",
        "sessions",
        "identities",
        "factors",
        "recovery_codes_unused",
        "events",
        "passkeys",
        "organizations",
    }
    assert {event["type"] for event in export["events"]} >= {"user.created", "login.succeeded"}
    assert all(event["user_id"] == str(user_id) for event in export["events"])
    assert export["factors"] == [] and export["recovery_codes_unused"] == 0
    profile = export["profile"]
    assert (profile["id"], profile["email"], profile["full_name"]) == (str(user_id), email, "Ivy")
    assert profile["google_linked"] and profile["last_login_at"] is not None
    sessions = export["sessions"]
    assert len(sessions) == 2
    assert [s["user_agent"] for s in sessions if s["current"]] == ["laptop"]
    assert export["identities"] == [
        {"provider": "google", "email": email, "linked_at": "2026-11-01T09:30:00Z"}
    ]

    text = json.dumps(export)
    async with api.container.uow() as uow:
        account = await uow.accounts.get(tenant.id, user_id)
        stored = await uow.sessions.list_active_for_account(tenant.id, user_id, datetime.now(UTC))
    assert account is not None and account.password_hash
    secrets = [account.password_hash, PASSWORD, "g-123"]
    secrets += [s.refresh_jti for s in stored]
    secrets += [first["access_token"], first["refresh_token"], second["refresh_token"]]
    for secret in secrets:
        assert secret not in text
    for word in ("hash", "jti", "token", "secret"):
        assert word not in text.lower()
    assert "someone-else" not in text and other["user"]["id"] not in text


async def test_self_service_needs_a_live_access_token(api: Api) -> None:
    key = await api.api_key("users:read", "users:write")
    for token in (None, "junk", key):
        await problem_of(await api.get(f"{ME}/export", token=token), 401, "invalid_token")
        response = await api.delete(ME, token=token, json={"password": PASSWORD})
        await problem_of(response, 401, "invalid_token")


async def test_with_mfa_on_deleting_needs_an_aal2_session_and_erases_the_factors(
    mfa_app: Callable[..., Any],
) -> None:
    app: Mfa = await mfa_app()
    api = app.api
    email = "mfa-user@example.com"
    first = await api.register_verified(email)
    second = await api.login(email)  # before MFA: stays aal1
    await app.enable(first)  # the confirming session becomes aal2
    user_id = first["user"]["id"]

    export = await (await api.get(f"{ME}/export", token=first["access_token"])).json()
    assert export["profile"]["mfa_enabled"] is True
    assert [factor["type"] for factor in export["factors"]] == ["totp"]
    assert export["factors"][0]["confirmed_at"] is not None
    assert export["recovery_codes_unused"] == 10
    text = json.dumps(export)
    assert app.secret not in text and not any(code in text for code in app.recovery_codes)
    key = await api.api_key("users:read")
    admin_view = await (await api.get(f"/admin/users/{user_id}", token=key)).json()
    assert admin_view["mfa_enabled"] is True

    response = await api.delete(ME, token=second["access_token"], json={"password": PASSWORD})
    await problem_of(response, 403, "mfa_required")
    response = await api.delete(ME, token=first["access_token"], json={"password": PASSWORD})
    assert response.status == 204, await response.text()
    async with api.container.engine().connect() as connection:
        for table in (tables.totp_factors, tables.recovery_codes):
            query = select(func.count()).select_from(table)
            left = await connection.scalar(query.where(table.c.user_id == uuid.UUID(user_id)))
            assert left == 0, table.name
