"""The account page: every form calls the API's use case and shows its result."""

from __future__ import annotations

import base64
import json
import re
import time
from html import unescape

import pyotp

from tests.integration.http.conftest import PASSWORD
from tests.integration.http.pages_client import PageClient, pages
from tests.integration.http.test_pages import EMAIL, sign_in, sign_up

__all__ = ["pages"]  # fixture


async def test_rename_and_change_password(pages: PageClient) -> None:
    await sign_up(pages)
    other = await pages.api.login(EMAIL)  # an API session, ended by the change
    await pages.get("/ui/account")
    response = await pages.post("/ui/account/profile", {"full_name": "Augusta Ada King"})
    assert response.headers["Location"] == "/ui/account?notice=profile_saved"
    await pages.get("/ui/account?notice=profile_saved")
    assert "Augusta Ada King" in pages.html and "Your name is saved." in pages.html

    response = await pages.post(
        "/ui/account/password", {"current_password": "wrong one!", "new_password": "x" * 12}
    )
    assert response.status == 401 and 'id="e-current_password"' not in pages.html
    assert "The email address or the password is not right." in pages.text()
    response = await pages.post(
        "/ui/account/password", {"current_password": PASSWORD, "new_password": "short"}
    )
    assert response.status == 422 and 'id="e-new_password"' in pages.html
    response = await pages.post(
        "/ui/account/password",
        {"current_password": PASSWORD, "new_password": "another long passphrase"},
    )
    assert response.status == 303
    assert (await pages.get("/ui/account")).status == 200  # this browser stays
    assert (await pages.api.me(other["access_token"])).status == 401  # the others end


async def test_end_one_session_and_all_others(pages: PageClient) -> None:
    await sign_up(pages)
    first = await pages.api.login(EMAIL)
    second = await pages.api.login(EMAIL)
    await pages.get("/ui/account")
    first_sid = json.loads(base64.urlsafe_b64decode(first["access_token"].split(".")[1] + "=="))[
        "sid"
    ]
    response = await pages.post("/ui/account/sessions/end", {"session_id": first_sid})
    assert response.status == 303
    assert (await pages.api.me(first["access_token"])).status == 401
    assert (await pages.api.me(second["access_token"])).status == 200
    await pages.get("/ui/account")
    response = await pages.post("/ui/account/sessions/end-others", {})
    assert response.status == 303
    assert (await pages.api.me(second["access_token"])).status == 401
    assert (await pages.get("/ui/account")).status == 200


async def test_mfa_enrol_with_qr_then_sign_in_with_totp_then_turn_off(pages: PageClient) -> None:
    await sign_up(pages)
    await pages.get("/ui/account")
    response = await pages.post("/ui/account/mfa/enroll", {})
    assert response.status == 200 and "<svg" in pages.html
    secret = re.search(r"<code>([A-Z2-7]+)</code>", pages.html)
    assert secret is not None
    totp = pyotp.TOTP(secret.group(1))
    response = await pages.post("/ui/account/mfa/confirm", {"code": totp.now()})
    assert response.status == 200, pages.text()
    codes = re.findall(r"<li>([a-z0-9-]{6,})</li>", pages.html)
    assert len(codes) == 10

    await pages.get("/ui/account")
    await pages.post("/ui/sign-out", {})
    assert (await sign_in(pages)).startswith("/ui/mfa")
    await pages.get("/ui/mfa?method=recovery")
    response = await pages.post("/ui/mfa", {"recovery_code": unescape(codes[0])})
    assert response.status == 303, pages.text()
    await pages.get("/ui/account")
    assert "Two-step sign-in is on" in pages.html
    response = await pages.post("/ui/account/mfa/disable", {"code": totp.at(time.time() + 30)})
    assert response.status == 303, pages.text()
    await pages.get("/ui/account")
    assert "Set up an authenticator app" in pages.html


async def test_download_my_data(pages: PageClient) -> None:
    await sign_up(pages)
    response = await pages.client.get("/ui/account/export")
    assert response.status == 200
    assert "attachment" in response.headers["Content-Disposition"]
    data = json.loads(await response.text())
    assert data["profile"]["email"] == EMAIL and data["sessions"]


async def test_delete_my_account(pages: PageClient) -> None:
    await sign_up(pages)
    await pages.get("/ui/account")
    response = await pages.post("/ui/account/delete", {"password": "not it at all"})
    assert response.status == 401
    response = await pages.post("/ui/account/delete", {"password": PASSWORD})
    assert response.status == 303
    assert response.headers["Location"] == "/ui/sign-in?notice=deleted"
    assert (await pages.get("/ui/account")).status == 303
    response = await pages.api.post("/auth/login", {"email": EMAIL, "password": PASSWORD})
    assert response.status == 401
