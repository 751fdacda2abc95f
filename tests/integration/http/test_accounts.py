"""The account lifecycle over HTTP: register, one-time codes, password reset, login."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from identity.adapters.email_syntax import normalise_email
from tests.integration.http.conftest import (
    CODE,
    PASSWORD,
    Api,
    MakeApi,
    code_in,
    other_code,
    problem_of,
    text_of,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
NEW_PASSWORD = "a brand new passphrase"


async def register(api: Api, email: str, password: str | None = PASSWORD) -> bytes:
    body: dict[str, Any] = {"email": email}
    if password is not None:
        body["password"] = password
    response = await api.post("/auth/register", body)
    assert response.status == 202, await response.text()
    return await response.read()


async def verify_fails(api: Api, email: str, code: str, purpose: str) -> bytes:
    response = await api.post(
        "/auth/verify-otp", {"email": email, "otp_code": code, "purpose": purpose}
    )
    await problem_of(response, 400, "otp_invalid")
    return await response.read()


# --- register ------------------------------------------------------------------------


async def test_register_answers_alike_for_a_new_an_unverified_and_a_verified_email(
    api: Api,
) -> None:
    email = "ann@example.com"

    new = await register(api, email)
    code = await api.next_code(email)
    unverified = await register(api, email)
    tokens = await api.verify(email, code, "verification")
    verified = await register(api, email)

    assert new == unverified == verified
    assert tokens["user"]["is_verified"] is True
    body = await (await api.post("/auth/register", {"email": email})).json()
    assert set(body) == {"message", "email", "expires_in_minutes"}
    assert body["email"] == email
    assert body["expires_in_minutes"] == 10


async def test_a_verified_owner_who_registers_again_gets_a_notice_without_a_code(
    api: Api,
) -> None:
    email = "owner@example.com"
    await api.register_verified(email)

    await register(api, email, password="an attacker's password")
    notice = await api.next_mail(email)

    assert "register" in str(notice["Subject"]).lower()
    assert CODE.search(text_of(notice)) is None
    # ...and the attacker's password was not set.
    wrong = await api.post("/auth/login", {"email": email, "password": "an attacker's password"})
    await problem_of(wrong, 401, "invalid_credentials")
    await api.login(email)


async def test_register_creates_an_unverified_account_that_cannot_log_in_yet(api: Api) -> None:
    await register(api, "eve@example.com")
    await api.next_mail("eve@example.com")  # the account exists once its code is mailed

    unverified = await api.post("/auth/login", {"email": "eve@example.com", "password": PASSWORD})
    wrong_password = await api.post(
        "/auth/login", {"email": "eve@example.com", "password": "not the password"}
    )

    await problem_of(unverified, 403, "email_not_verified")
    # A wrong password reveals nothing about the account's state.
    await problem_of(wrong_password, 401, "invalid_credentials")


async def test_verification_logs_in_with_the_token_response(api: Api) -> None:
    tokens = await api.register_verified("tom@example.com", full_name="Tom Thumb")

    assert set(tokens) == {
        "access_token",
        "token_type",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
        "user",
    }
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["refresh_token_expires_in"] == 30 * 86400
    user = tokens["user"]
    assert set(user) == {
        "id",
        "email",
        "full_name",
        "is_active",
        "is_verified",
        "has_password",
        "google_linked",
        "identities",
        "mfa_enabled",
        "created_at",
        "tenant",
        "locale",
    }
    assert user["locale"] is None  # registered over the API: no language chosen
    assert (user["email"], user["full_name"], user["tenant"]) == (
        "tom@example.com",
        "Tom Thumb",
        "default",
    )
    assert user["is_active"] and user["is_verified"] and user["has_password"]
    assert user["google_linked"] is False and user["identities"] == []
    me = await api.me(tokens["access_token"])
    assert me.status == 200
    assert await me.json() == user


async def test_an_account_without_a_password_logs_in_with_codes(api: Api) -> None:
    email = "otp-only@example.com"
    first = await api.register_verified(email, password=None)
    assert first["user"]["has_password"] is False

    code = await api.request_code(email, "login")
    second = await api.verify(email, code, "login")

    assert second["user"]["id"] == first["user"]["id"]
    assert (await api.me(second["access_token"])).status == 200
    no_password = await api.post("/auth/login", {"email": email, "password": "any password 1"})
    await problem_of(no_password, 401, "invalid_credentials")


async def test_a_login_code_also_verifies_an_unverified_account(api: Api) -> None:
    email = "late@example.com"
    await register(api, email)
    await api.next_code(email)  # the verification code, left unused

    code = await api.request_code(email, "login")
    tokens = await api.verify(email, code, "login")

    assert tokens["user"]["is_verified"] is True
    await api.login(email)


async def test_resend_otp_is_an_alias_of_request_otp(api: Api) -> None:
    email = "resend@example.com"
    await api.register_verified(email)

    response = await api.post("/auth/resend-otp", {"email": email, "purpose": "login"})
    assert response.status == 202
    body = await response.json()
    assert set(body) == {"message", "email", "expires_in_minutes"}

    await api.verify(email, await api.next_code(email), "login")


async def test_a_weak_password_is_refused_naming_the_field(api: Api) -> None:
    for password in ("short12", "password123", "PassWord123", "qwertyuiop", "x" * 257):
        response = await api.post(
            "/auth/register", {"email": "w@example.com", "password": password}
        )

        problem = await problem_of(response, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["password"], password
    # Eight characters are enough when they are not a common password.
    await register(api, "w@example.com", password="zq8#kd0p")


async def test_a_password_of_100_emoji_works_and_is_not_truncated(api: Api) -> None:
    email = "emoji@example.com"
    password = "😀" * 99 + "🎉"
    await api.register_verified(email, password=password)

    await api.login(email, password)
    almost = await api.post("/auth/login", {"email": email, "password": "😀" * 100})

    # 400 bytes: far past bcrypt's 72, so a truncating hasher would let this in.
    await problem_of(almost, 401, "invalid_credentials")


async def test_emails_are_normalised_and_compared_case_insensitively(api: Api) -> None:
    response = await api.post(
        "/auth/register", {"email": "  Bob@EXAMPLE.com ", "password": PASSWORD}
    )
    assert (await response.json())["email"] == "Bob@example.com"
    code = await api.next_code("Bob@example.com")

    tokens = await api.verify("bob@example.com", code, "verification")
    again = await api.login("BOB@Example.Com")
    lower = await api.login("bob@example.com")

    assert tokens["user"]["email"] == "Bob@example.com"
    assert again["user"]["id"] == lower["user"]["id"] == tokens["user"]["id"]
    # One account: registering the other spelling is the verified owner's notice.
    await register(api, "bob@example.com")
    assert CODE.search(text_of(await api.next_mail("bob@example.com"))) is None


async def test_an_internationalised_domain_is_idna_encoded(api: Api) -> None:
    response = await api.post("/auth/register", {"email": "user@Bücher.example"})

    assert response.status == 202
    assert (await response.json())["email"] == "user@xn--bcher-kva.example"
    await api.next_code("user@xn--bcher-kva.example")


async def test_an_invalid_email_is_a_422(api: Api) -> None:
    for email in ("not-an-email", "a@b", "two@@example.com", "", 42, None, "a" * 330 + "@x.io"):
        response = await api.post("/auth/register", {"email": email})

        problem = await problem_of(response, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == ["email"], email


# --- one-time codes ------------------------------------------------------------------


async def test_a_wrong_code_is_otp_invalid(api: Api) -> None:
    email = "wrong@example.com"
    await register(api, email)
    code = await api.next_code(email)

    await verify_fails(api, email, other_code(code), "verification")
    await api.verify(email, code, "verification")


async def test_after_five_wrong_tries_even_the_right_code_fails(api: Api) -> None:
    email = "guess@example.com"
    await register(api, email)
    code = await api.next_code(email)

    for _ in range(5):
        await verify_fails(api, email, other_code(code), "verification")
    await verify_fails(api, email, code, "verification")

    # The dead code is replaced on request, without waiting out the resend interval.
    fresh = await api.request_code(email, "verification")
    await api.verify(email, fresh, "verification")


async def test_a_code_cannot_be_used_twice(api: Api) -> None:
    email = "twice@example.com"
    await register(api, email)
    code = await api.next_code(email)

    await api.verify(email, code, "verification")
    await verify_fails(api, email, code, "verification")


async def test_one_message_for_every_kind_of_invalid_code(api: Api) -> None:
    await api.register_verified("known@example.com")

    unknown_email = await verify_fails(api, "unknown@example.com", "123456", "verification")
    no_code = await verify_fails(api, "known@example.com", "123456", "login")

    assert unknown_email == no_code


async def test_purposes_never_cross(api: Api) -> None:
    email = "cross@example.com"
    await register(api, email)
    verification = await api.next_code(email)

    await verify_fails(api, email, verification, "login")
    reset = await api.post(
        "/auth/reset-password",
        {"email": email, "otp_code": verification, "new_password": NEW_PASSWORD},
    )
    await problem_of(reset, 400, "otp_invalid")
    await api.verify(email, verification, "verification")  # still good for its own purpose

    login_code = await api.request_code(email, "login")
    reset_code = await api.request_code(email, "password_reset")
    await verify_fails(api, email, login_code, "verification")
    await verify_fails(api, email, reset_code, "login")
    await verify_fails(api, email, reset_code, "verification")
    as_reset = await api.post(
        "/auth/verify-otp", {"email": email, "otp_code": reset_code, "purpose": "password_reset"}
    )
    await problem_of(as_reset, 422, "validation_error")

    await api.verify(email, login_code, "login")
    reset = await api.post(
        "/auth/reset-password",
        {"email": email, "otp_code": reset_code, "new_password": NEW_PASSWORD},
    )
    assert reset.status == 200


MALFORMED_CODE_REQUESTS = [
    ({"email": "a@example.com", "otp_code": "12345", "purpose": "login"}, "otp_code"),
    ({"email": "a@example.com", "otp_code": "abcdef", "purpose": "login"}, "otp_code"),
    (
        {
            "email": "a@example.com",
            "otp_code": "\uff11\uff12\uff13\uff14\uff15\uff16",
            "purpose": "login",
        },
        "otp_code",
    ),
    ({"email": "a@example.com", "otp_code": "123456", "purpose": "admin"}, "purpose"),
    ({"email": "a@example.com", "otp_code": "123456"}, "purpose"),
]


async def test_a_malformed_code_request_is_a_422(api: Api) -> None:
    for body, field in MALFORMED_CODE_REQUESTS:
        response = await api.post("/auth/verify-otp", body)

        problem = await problem_of(response, 422, "validation_error")
        assert [e["field"] for e in problem["errors"]] == [field], body
    unknown_purpose = await api.post(
        "/auth/request-otp", {"email": "a@example.com", "purpose": "admin"}
    )
    problem = await problem_of(unknown_purpose, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["purpose"]


# --- password reset ------------------------------------------------------------------


async def test_reset_password_sets_the_password_and_ends_every_session(api: Api) -> None:
    email = "reset@example.com"
    first = await api.register_verified(email)
    second = await api.login(email)

    code = await api.request_code(email, "password_reset")
    response = await api.post(
        "/auth/reset-password", {"email": email, "otp_code": code, "new_password": NEW_PASSWORD}
    )

    assert response.status == 200
    assert set(await response.json()) == {"message"}
    for tokens in (first, second):
        refresh = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
        await problem_of(refresh, 401, "invalid_token")
        assert (await api.me(tokens["access_token"])).status == 401
    old = await api.post("/auth/login", {"email": email, "password": PASSWORD})
    await problem_of(old, 401, "invalid_credentials")
    await api.login(email, NEW_PASSWORD)
    notice = await api.next_mail(email)
    assert "password" in str(notice["Subject"]).lower()
    assert CODE.search(text_of(notice)) is None


async def test_reset_password_with_a_wrong_code_changes_nothing(api: Api) -> None:
    email = "reset-wrong@example.com"
    await api.register_verified(email)
    code = await api.request_code(email, "password_reset")

    response = await api.post(
        "/auth/reset-password",
        {"email": email, "otp_code": other_code(code), "new_password": NEW_PASSWORD},
    )

    await problem_of(response, 400, "otp_invalid")
    await api.login(email)


async def test_reset_password_refuses_a_weak_password_naming_new_password(api: Api) -> None:
    email = "reset-weak@example.com"
    await api.register_verified(email)
    code = await api.request_code(email, "password_reset")

    response = await api.post(
        "/auth/reset-password", {"email": email, "otp_code": code, "new_password": "password1"}
    )

    problem = await problem_of(response, 422, "validation_error")
    assert [e["field"] for e in problem["errors"]] == ["new_password"]
    # The code was not spent by the refused request.
    ok = await api.post(
        "/auth/reset-password", {"email": email, "otp_code": code, "new_password": NEW_PASSWORD}
    )
    assert ok.status == 200


# --- login ---------------------------------------------------------------------------


async def test_unknown_email_and_wrong_password_fail_identically(api: Api) -> None:
    await api.register_verified("real@example.com")

    unknown = await api.post("/auth/login", {"email": "ghost@example.com", "password": PASSWORD})
    wrong = await api.post(
        "/auth/login", {"email": "real@example.com", "password": "not the password"}
    )

    await problem_of(unknown, 401, "invalid_credentials")
    await problem_of(wrong, 401, "invalid_credentials")
    assert await unknown.read() == await wrong.read()
    right = await api.post("/auth/login", {"email": "real@example.com", "password": PASSWORD})
    assert right.status == 200
    assert right.headers["Cache-Control"] == "no-store"
    assert (await right.json())["user"]["email"] == "real@example.com"


async def _cli(environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "identity.entrypoints.cli",
        *args,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO_ROOT),
            **environ,
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_a_disabled_account_cannot_log_in_and_loses_its_sessions(api: Api) -> None:
    email = "disabled@example.com"
    tokens = await api.register_verified(email)
    assert api.environ is not None

    status, out, err = await _cli(api.environ, "users", "disable", "Disabled@Example.com")

    assert status == 0, err
    assert '"is_active": false' in out
    login = await api.post("/auth/login", {"email": email, "password": PASSWORD})
    await problem_of(login, 403, "account_disabled")
    assert (await api.me(tokens["access_token"])).status == 401
    refresh = await api.post("/auth/refresh-token", {"refresh_token": tokens["refresh_token"]})
    assert refresh.status == 401
    # A wrong password on a disabled account stays a plain 401.
    wrong = await api.post("/auth/login", {"email": email, "password": "not the password"})
    await problem_of(wrong, 401, "invalid_credentials")

    await api.container.user_admin().set_active("default", normalise_email(email), True)
    await api.login(email)


async def test_a_code_check_on_a_disabled_account_reveals_nothing(api: Api) -> None:
    email = "no-codes@example.com"
    await api.register_verified(email)
    await api.container.user_admin().set_active("default", normalise_email(email), False)

    requested = await api.post("/auth/request-otp", {"email": email, "purpose": "login"})
    disabled = await verify_fails(api, email, "123456", "login")
    unknown = await verify_fails(api, "nobody@example.com", "123456", "login")

    assert requested.status == 202
    # A guessed code must not tell a disabled account from an unknown one.
    assert disabled == unknown


async def test_login_is_rate_limited_per_email(make_api: MakeApi) -> None:
    api = await make_api(RATE_LIMIT_LOGIN="2/minute")
    body = {"email": "limited@example.com", "password": PASSWORD}

    statuses = [(await api.post("/auth/login", body)).status for _ in range(2)]
    limited = await api.post("/auth/login", body)
    other = await api.post("/auth/login", {**body, "email": "other@example.com"})

    assert statuses == [401, 401]
    await problem_of(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Limit"] == "2"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Reset" in limited.headers
    assert other.status == 401


# --- no enumeration --------------------------------------------------------------------


async def _answers(api: Api, path: str, body: dict[str, Any]) -> tuple[int, bytes, set[str]]:
    response = await api.post(path, body)
    names = {n.lower() for n in response.headers} - {"date", "x-request-id"}
    return response.status, await response.read(), names


ENUMERATION_CASES = [
    ("/auth/register", {"password": PASSWORD}),
    ("/auth/register", {}),
    ("/auth/request-otp", {"purpose": "login"}),
    ("/auth/request-otp", {"purpose": "password_reset"}),
    ("/auth/request-otp", {"purpose": "verification"}),
    ("/auth/resend-otp", {"purpose": "login"}),
    ("/auth/login", {"password": "not the password"}),
]


async def test_existing_and_unknown_emails_get_the_same_answer(api: Api) -> None:
    known = "member@example.com"
    await api.register_verified(known)

    for number, (path, extra) in enumerate(ENUMERATION_CASES):
        unknown = f"stranger{number}@example.com"  # unknown until this very request
        status_known, body_known, headers_known = await _answers(
            api, path, {"email": known, **extra}
        )
        status_unknown, body_unknown, headers_unknown = await _answers(
            api, path, {"email": unknown, **extra}
        )

        case = (path, extra)
        assert status_known == status_unknown, case
        # The answer may repeat the address it was given, and nothing else differs.
        assert body_known.replace(known.encode(), unknown.encode()) == body_unknown, case
        assert headers_known == headers_unknown, case


async def test_only_the_mailed_code_reaches_the_inbox(api: Api) -> None:
    email = "inbox@example.com"
    await register(api, email)

    message = await api.next_mail(email)

    code = code_in(message)
    assert code not in str(message["Subject"])
    assert str(message["To"]) == email
