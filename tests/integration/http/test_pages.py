"""The hosted pages over HTTP: sign-up, codes, sign-in, MFA, sign-out, and their defences."""

from __future__ import annotations

import time

import pyotp

from tests.integration.http.conftest import PASSWORD, code_in
from tests.integration.http.pages_client import PageClient, make_pages, pages

__all__ = ["make_pages", "pages"]  # fixtures

EMAIL = "ada@example.com"


async def sign_up(pages: PageClient, email: str = EMAIL, password: str = PASSWORD) -> None:
    await pages.get("/ui/sign-up")
    response = await pages.post(
        "/ui/sign-up", {"email": email, "password": password, "full_name": "Ada Lovelace"}
    )
    assert response.status == 200, pages.html
    code = await pages.api.next_code(email)
    response = await pages.post(
        "/ui/verify",
        {"email": email, "otp_code": code, "purpose": "verification", "action": "verify"},
    )
    assert response.status == 303, pages.html
    assert response.headers["Location"] == "/ui/account"


async def sign_in(pages: PageClient, email: str = EMAIL, password: str = PASSWORD) -> str:
    await pages.get("/ui/sign-in")
    response = await pages.post(
        "/ui/sign-in", {"email": email, "password": password, "action": "password"}
    )
    assert response.status == 303, pages.html
    return response.headers["Location"]


async def test_sign_in_page_headers_and_csrf_cookie(pages: PageClient) -> None:
    response = await pages.get("/ui/sign-in")
    assert response.status == 200
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.cookies["identity_csrf"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # the test issuer is http
    assert 'autocomplete="username webauthn"' in pages.html
    assert 'autocomplete="current-password"' in pages.html
    assert '<html lang="en">' in pages.html and pages.html.count("<h1>") == 1


async def test_sign_up_verify_account_and_sign_out(pages: PageClient) -> None:
    await sign_up(pages)
    cookie = pages.cookie("identity_session_default")
    assert cookie is not None and len(cookie) >= 40
    response = await pages.get("/ui/account")
    assert response.status == 200
    assert EMAIL in pages.html and "Ada Lovelace" in pages.html and "This browser" in pages.html

    # A browser session is a session of section 2: listed with its kind.
    tokens = await pages.api.login(EMAIL)
    listed = await (await pages.api.get("/auth/sessions", token=tokens["access_token"])).json()
    kinds = sorted(session["kind"] for session in listed["sessions"])
    assert kinds == ["api", "browser"]

    response = await pages.post("/ui/sign-out", {})
    assert response.status == 303
    assert response.headers["Location"] == "/ui/sign-in?notice=signed_out"
    response = await pages.get("/ui/account")
    assert response.status == 303 and response.headers["Location"].startswith("/ui/sign-in")
    listed = await (await pages.api.get("/auth/sessions", token=tokens["access_token"])).json()
    assert [session["kind"] for session in listed["sessions"]] == ["api"]


async def test_the_old_cookie_is_dead_after_sign_out(pages: PageClient) -> None:
    await sign_up(pages)
    value = pages.cookie("identity_session_default")
    await pages.get("/ui/account")
    await pages.post("/ui/sign-out", {})
    pages.client.session.cookie_jar.update_cookies({"identity_session_default": value or ""})
    response = await pages.get("/ui/account")
    assert response.status == 303


async def test_logout_all_ends_the_browser_session(pages: PageClient) -> None:
    await sign_up(pages)
    tokens = await pages.api.login(EMAIL)
    response = await pages.api.post("/auth/logout-all", token=tokens["access_token"])
    assert response.status == 200
    assert (await pages.get("/ui/account")).status == 303


async def test_password_sign_in_same_error_for_unknown_and_wrong(pages: PageClient) -> None:
    await pages.api.register_verified(EMAIL)
    await pages.get("/ui/sign-in")
    wrong = await pages.post(
        "/ui/sign-in", {"email": EMAIL, "password": "not the password", "action": "password"}
    )
    wrong_text = pages.text()
    unknown = await pages.post(
        "/ui/sign-in",
        {"email": "nobody@example.com", "password": "not the password", "action": "password"},
    )
    assert wrong.status == unknown.status == 401
    assert "The email address or the password is not right." in wrong_text
    assert pages.text() == wrong_text.replace(EMAIL, "nobody@example.com")
    assert "not the password" not in pages.html  # a password is never echoed

    assert await sign_in(pages) == "/ui/account"
    assert (await pages.get("/ui/account")).status == 200


async def test_empty_fields_are_shown_next_to_them(pages: PageClient) -> None:
    await pages.get("/ui/sign-in")
    response = await pages.post("/ui/sign-in", {"email": "", "password": "", "action": "password"})
    assert response.status == 422
    assert 'aria-invalid="true"' in pages.html and 'aria-describedby="e-email"' in pages.html
    assert 'id="e-email"' in pages.html and "This field is required." in pages.html


async def test_email_me_a_code_then_sign_in_with_it(pages: PageClient) -> None:
    await pages.api.register_verified(EMAIL)
    await pages.get("/ui/sign-in")
    response = await pages.post("/ui/sign-in", {"email": EMAIL, "action": "code"})
    assert response.status == 200 and 'autocomplete="one-time-code"' in pages.html
    assert 'inputmode="numeric"' in pages.html
    code = await pages.api.next_code(EMAIL)
    response = await pages.post(
        "/ui/verify", {"email": EMAIL, "otp_code": code, "purpose": "login", "action": "verify"}
    )
    assert response.status == 303
    assert (await pages.get("/ui/account")).status == 200


async def test_forgot_and_reset_password(pages: PageClient) -> None:
    await sign_up(pages)
    await pages.get("/ui/forgot-password")
    response = await pages.post("/ui/forgot-password", {"email": EMAIL})
    assert response.status == 200 and 'autocomplete="new-password"' in pages.html
    code = await pages.api.next_code(EMAIL)
    response = await pages.post(
        "/ui/reset-password",
        {"email": EMAIL, "otp_code": code, "new_password": "a brand new passphrase"},
    )
    assert response.status == 303
    assert response.headers["Location"] == "/ui/sign-in?notice=password_reset"
    # The reset ended every session, the browser's too.
    assert (await pages.get("/ui/account")).status == 303
    assert await sign_in(pages, password="a brand new passphrase") == "/ui/account"


async def test_sign_in_with_totp(pages: PageClient) -> None:
    tokens = await pages.api.register_verified(EMAIL)
    access = tokens["access_token"]
    enrolled = await (await pages.api.post("/auth/mfa/totp/enroll", token=access)).json()
    totp = pyotp.TOTP(enrolled["secret"])
    confirmed = await pages.api.post("/auth/mfa/totp/confirm", {"code": totp.now()}, token=access)
    assert confirmed.status == 200

    assert (await sign_in(pages)).startswith("/ui/mfa")
    assert (await pages.get("/ui/mfa")).status == 200
    wrong = f"{(int(totp.now()) + 500_000) % 1_000_000:06d}"
    response = await pages.post("/ui/mfa", {"code": wrong})
    assert response.status == 400 and "That code is not right." in pages.html
    code = totp.at(time.time() + 30)  # the next step: the confirming one is spent
    response = await pages.post("/ui/mfa", {"code": code})
    assert response.status == 303, pages.html
    assert (await pages.get("/ui/account")).status == 200
    listed = await (await pages.api.get("/auth/sessions", token=access)).json()
    assert "browser" in [session["kind"] for session in listed["sessions"]]


async def test_csrf_and_origin_refusals_change_nothing(pages: PageClient) -> None:
    await pages.get("/ui/sign-up")
    fields = {"email": EMAIL, "password": PASSWORD}
    assert (await pages.post("/ui/sign-up", fields, csrf=False)).status == 403
    assert (await pages.post("/ui/sign-up", {**fields, "csrf_token": "x" * 43})).status == 403
    foreign = await pages.post("/ui/sign-up", fields, headers={"Origin": "https://evil.example"})
    assert foreign.status == 403
    cross = await pages.post("/ui/sign-up", fields, headers={"Sec-Fetch-Site": "cross-site"})
    assert cross.status == 403
    assert pages.api.mail_for(EMAIL) == []
    # Chrome's "Origin: null" under no-referrer, with a valid token, is accepted.
    await pages.get("/ui/sign-up")
    ok = await pages.post(
        "/ui/sign-up", fields, headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    )
    assert ok.status == 200


async def test_a_token_from_before_sign_out_is_refused(pages: PageClient) -> None:
    await sign_up(pages)
    await pages.get("/ui/account")
    signed_in_token = pages.token
    await pages.post("/ui/sign-out", {})
    response = await pages.post("/ui/sign-out", {"csrf_token": signed_in_token})
    assert response.status == 403


async def test_bad_bodies_get_a_4xx_page(pages: PageClient) -> None:
    await pages.get("/ui/sign-in")
    big = await pages.client.post(
        "/ui/sign-in",
        data=b"a=" + b"x" * (10 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert big.status == 413
    raw = f"csrf_token={pages.token}&email=%ff%fe&password=x".encode()
    bad = await pages.client.post(
        "/ui/sign-in",
        data=raw,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert bad.status == 400
    latin = await pages.client.post(
        "/ui/sign-in",
        data=b"csrf_token=" + pages.token.encode() + b"&email=\xe9",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert latin.status == 400
    json_body = await pages.client.post("/ui/sign-in", json={}, allow_redirects=False)
    assert json_body.status in (403, 415)


async def test_return_to_is_never_an_open_redirect(make_pages) -> None:  # type: ignore[no-untyped-def]
    pages = await make_pages(OAUTH_REDIRECT_ALLOWLIST="https://app.example.com/done")
    await pages.api.register_verified(EMAIL)
    for target, expected in (
        ("https://evil.example/x", "/ui/account"),
        ("//evil.example/x", "/ui/account"),
        ("/ui/account?tab=sessions", "/ui/account?tab=sessions"),
        ("https://app.example.com/done?x=1", "https://app.example.com/done?x=1"),
    ):
        await pages.get(f"/ui/sign-in?return_to={target}")
        response = await pages.post(
            f"/ui/sign-in?return_to={target}",
            {"email": EMAIL, "password": PASSWORD, "action": "password"},
        )
        assert response.status == 303
        # Signed in now: the sign-in page sends the browser on at once.
        assert response.headers["Location"] == expected, target
        await pages.get("/ui/account")
        await pages.post("/ui/sign-out", {})


async def test_german(pages: PageClient) -> None:
    await pages.get("/ui/sign-in?lang=de")
    assert '<html lang="de">' in pages.html and "Anmelden" in pages.html
    await pages.get("/ui/sign-in", headers={"Accept-Language": "fr;q=0.9, de;q=0.8"})
    assert '<html lang="de">' in pages.html
    await pages.get("/ui/sign-in", headers={"Accept-Language": "fr"})
    assert '<html lang="en">' in pages.html


async def test_rate_limited_page_says_when(make_pages) -> None:  # type: ignore[no-untyped-def]
    pages = await make_pages(RATE_LIMIT_GLOBAL="3/minute")
    statuses = [(await pages.get("/ui/sign-in")).status for _ in range(4)]
    assert statuses[-1] == 429
    assert "Please try again in" in pages.text()
    assert pages.html.startswith("<!doctype html>")


async def test_unknown_tenant_is_a_404_page(pages: PageClient) -> None:
    response = await pages.get("/ui/sign-in?tenant=nope")
    assert response.status == 404 and response.content_type == "text/html"


async def test_branding_of_a_tenant(pages: PageClient) -> None:
    api = pages.api
    operator = await api.api_key("tenants:manage")
    assert (await api.post("/admin/tenants", {"slug": "acme"}, token=operator)).status == 201
    branding = {
        "display_name": "Acme Cloud",
        "logo_url": "https://cdn.acme.example/logo.png",
        "primary_color": "#FFCC00",
        "support_email": "help@acme.example",
        "terms_url": "https://acme.example/terms",
        "privacy_url": "https://acme.example/privacy",
        "default_locale": "de",
    }
    response = await api.patch("/admin/tenants/acme", {"settings": branding}, token=operator)
    assert response.status == 200, await response.text()
    for bad in (
        {"logo_url": "http://cdn.acme.example/logo.png"},
        {"primary_color": "yellow"},
        {"default_locale": "fr"},
        {"support_email": "not an address"},
    ):
        response = await api.patch("/admin/tenants/acme", {"settings": bad}, token=operator)
        assert response.status == 422, bad

    response = await pages.get("/ui/sign-in?tenant=acme")
    assert response.status == 200
    assert "Acme Cloud" in pages.html and '<html lang="de">' in pages.html
    assert "https://cdn.acme.example/logo.png" in pages.html
    assert "https://acme.example/terms" in pages.html and "mailto:help@acme.example" in pages.html
    csp = response.headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://cdn.acme.example;" in csp
    assert 'action="/ui/sign-in?tenant=acme"' in pages.html  # the flow keeps the tenant
    css = await (await pages.client.get("/ui/brand.css?tenant=acme")).text()
    assert "--primary:#ffcc00" in css and "--on-primary:#000000" in css  # AA on yellow

    # The tenant's own browser session: its cookie, and the account page of that tenant.
    await api.post(
        "/auth/register", {"email": EMAIL, "password": PASSWORD}, headers={"X-Tenant": "acme"}
    )
    code = await api.next_code(EMAIL)
    response = await pages.post(
        "/ui/verify?tenant=acme",
        {"email": EMAIL, "otp_code": code, "purpose": "verification", "action": "verify"},
    )
    assert response.status == 303
    assert response.headers["Location"] == "/ui/account?tenant=acme"
    assert pages.cookie("identity_session_acme") is not None
    assert pages.cookie("identity_session_default") is None
    assert (await pages.get("/ui/account?tenant=acme")).status == 200
    assert (await pages.get("/ui/account")).status == 303  # not signed in to the default tenant


async def test_an_account_keeps_the_language_it_signed_up_in(pages: PageClient) -> None:
    await pages.get("/ui/sign-up?lang=de")
    response = await pages.post(
        "/ui/sign-up?lang=de", {"email": EMAIL, "password": PASSWORD, "full_name": ""}
    )
    assert response.status == 200
    mail = await pages.api.next_mail(EMAIL)
    assert "Bestätigen Sie Ihre E-Mail-Adresse" in str(mail["Subject"])
    code = code_in(mail)
    response = await pages.post(
        "/ui/verify?lang=de",
        {"email": EMAIL, "otp_code": code, "purpose": "verification", "action": "verify"},
    )
    assert response.status == 303
    tokens = await pages.api.login(EMAIL)
    me = await (await pages.api.me(tokens["access_token"])).json()
    assert me["locale"] == "de"
    # Its mails stay German, whatever language a later request comes in.
    await pages.api.post("/auth/request-otp", {"email": EMAIL, "purpose": "login"})
    assert "Anmeldecode" in str((await pages.api.next_mail(EMAIL))["Subject"])
    key = await pages.api.api_key("users:read")
    listed = await (await pages.api.get(f"/admin/users?email={EMAIL}", token=key)).json()
    assert listed["items"][0]["locale"] == "de"
