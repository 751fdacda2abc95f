"""The hosted pages in a real browser: the whole walk, with JavaScript on and off, in
English and German; CSP, cookies, CSRF, nothing from another origin, and axe-core."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest

from tests.integration.http.browser import (
    DESKTOP,
    axe_findings,
    axe_findings_of_copy,
    axe_source,
    chromium,
    phone_problems,
    screenshot_path,
)
from tests.integration.http.conftest import PASSWORD, Api

__all__ = ["chromium"]  # fixture

pytestmark = pytest.mark.browser

NEW_PASSWORD = PASSWORD  # the walk signs in with the password it signed up with


class Walk:
    def __init__(self, api: Api, page: Any, name: str, *, javascript: bool, helper: Any) -> None:
        self.api = api
        self.helper = helper
        self.page = page
        self.name = name
        self.javascript = javascript
        self.base = str(api.client.make_url("")).rstrip("/")
        self.requests: list[str] = []
        self.csp_errors: list[str] = []
        self.axe = axe_source()
        page.on("request", lambda request: self.requests.append(request.url))
        page.on(
            "console",
            lambda message: (
                self.csp_errors.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )

    async def goto(self, path: str) -> None:
        response = await self.page.goto(self.base + path)
        self.check_headers(response)

    def check_headers(self, response: Any) -> None:
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"

    async def submit(self, form_action: str, button: str = "button[type=submit]") -> None:
        """Click the submit button of the form posting to ``form_action``."""
        async with self.page.expect_navigation():
            await self.page.click(f"form[action^='{form_action}'] {button}")

    async def check_page(self, shot: str) -> None:
        assert self.page.url.startswith(self.base)
        assert await self.page.locator("h1").count() == 1
        if self.javascript:
            findings = await axe_findings(self.page, self.axe)
        else:
            copy_url = self.base + "/ui/axe-copy-of-" + shot
            html = await self.page.content()
            findings = await axe_findings_of_copy(self.helper, copy_url, html, self.axe)
        assert findings == [], f"{self.page.url}: {findings}"
        await self.page.screenshot(path=str(screenshot_path(f"{self.name}-{shot}")), full_page=True)
        await self.check_phone(shot)

    async def check_phone(self, shot: str) -> None:
        """The same page at phone width: resized in place, not walked again. (Playwright
        measures through DevTools, so this works with the page's JavaScript off too.)"""
        try:
            problems = await phone_problems(self.page)
            assert problems == [], f"{self.page.url} at phone width: {problems}"
            phone_shot = screenshot_path(f"{self.name}-{shot}-phone")
            await self.page.screenshot(path=str(phone_shot), full_page=True)
        finally:
            await self.page.set_viewport_size(DESKTOP)

    def check_origin(self) -> None:
        foreign = [url for url in self.requests if not url.startswith(self.base)]
        assert foreign == []
        assert self.csp_errors == []


async def walk(api: Api, browser: Any, *, lang: str, javascript: bool) -> None:
    email = f"walk-{lang}-{'js' if javascript else 'nojs'}@example.com"
    context = await browser.new_context(
        java_script_enabled=javascript, locale="de-DE" if lang == "de" else "en-US"
    )
    page = await context.new_page()
    helper_context = await browser.new_context()
    helper = await helper_context.new_page()
    name = f"{lang}-{'js' if javascript else 'nojs'}"
    w = Walk(api, page, name, javascript=javascript, helper=helper)
    words = {
        "en": {"account": "Your account", "sign_in": "Sign in"},
        "de": {"account": "Ihr Konto", "sign_in": "Anmelden"},
    }[lang]

    # Sign up, then the emailed code.
    await w.goto("/ui/sign-up")
    assert await page.get_attribute("html", "lang") == lang
    await w.check_page("sign-up")
    await page.fill("#f-email", email)
    await page.fill("#f-full_name", "Ada Lovelace")
    await page.fill("#f-password", PASSWORD)
    await w.submit("/ui/sign-up")
    await w.check_page("verify")
    await page.fill("#f-otp_code", await api.next_code(email))
    await w.submit("/ui/verify", "button[value=verify]")

    # The account page, in a browser session with the contract's cookie.
    assert page.url == w.base + "/ui/account"
    assert words["account"] in await page.inner_text("h1")
    await w.check_page("account")
    cookies = {c["name"]: c for c in await context.cookies()}
    session = cookies["identity_session_default"]
    assert session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/"
    assert not session["secure"]  # http issuer in the test

    # A forged CSRF token is refused and changes nothing.
    if javascript:
        await page.evaluate(
            "document.querySelectorAll('input[name=csrf_token]').forEach(i => i.value = 'forged')"
        )
        await page.fill("form[action^='/ui/account/profile'] #f-full_name", "Mallory")
        response_status: list[int] = []
        page.once("response", lambda r: response_status.append(r.status))
        await w.submit("/ui/account/profile")
        assert response_status == [403]
        await w.goto("/ui/account")
        assert "Mallory" not in await page.content()

    # Sign out, sign in with the password.
    await w.submit("/ui/sign-out")
    assert "/ui/sign-in" in page.url
    await w.check_page("sign-in")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await w.submit("/ui/sign-in", "button[value=password]")
    assert page.url == w.base + "/ui/account"

    # Two-step sign-in: the QR code, the first code, the recovery codes.
    await w.submit("/ui/account/mfa/enroll")
    assert await page.locator(".qr svg").count() == 1
    await w.check_page("mfa-enroll")
    secret = re.search(r"<code>([A-Z2-7]+)</code>", await page.content())
    assert secret is not None
    totp = pyotp.TOTP(secret.group(1))
    await page.fill("#f-code", totp.now())
    await w.submit("/ui/account/mfa/confirm")
    assert await page.locator(".codes li").count() == 10
    await w.check_page("recovery-codes")
    async with page.expect_navigation():
        await page.click("a.button.primary")

    # Sign out, sign in with the password and then the TOTP code.
    await w.submit("/ui/sign-out")
    await page.fill("#f-email", email)
    await page.fill("#f-password", PASSWORD)
    await w.submit("/ui/sign-in", "button[value=password]")
    assert "/ui/mfa" in page.url
    await w.check_page("mfa")
    await page.fill("#f-code", totp.at(time.time() + 30))  # the confirming code is spent
    await w.submit("/ui/mfa")
    assert page.url == w.base + "/ui/account"
    assert words["sign_in"] not in await page.inner_text("h1")
    w.check_origin()
    await context.close()
    await helper_context.close()


@pytest.mark.parametrize(
    ("lang", "javascript"), [("en", True), ("de", False)], ids=["en-js", "de-nojs"]
)
async def test_walk(api: Api, chromium: Any, lang: str, javascript: bool) -> None:
    await walk(api, chromium, lang=lang, javascript=javascript)
