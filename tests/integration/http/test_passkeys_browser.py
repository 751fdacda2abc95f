"""Passkeys on the hosted pages in a real browser, with Chromium's virtual authenticator.

The authenticator is the DevTools ``WebAuthn`` domain's (through Playwright's CDP
session): a platform authenticator with resident keys and user verification
that answers by itself. WebAuthn needs a secure context whose host can be an
RP ID, so the app is served at ``http://localhost:<port>`` (not an IP address)
and its issuer, RP ID and origins say so.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from identity.entrypoints.http.app import create_app
from identity.entrypoints.http.keys import CONTAINER
from identity.entrypoints.settings import load_settings
from tests.integration.http.browser import axe_findings, axe_source, chromium
from tests.integration.http.conftest import PASSWORD, Api
from tests.smtp_server import SmtpTestServer

__all__ = ["chromium"]  # fixture

pytestmark = pytest.mark.browser

EMAIL = "ada@example.com"
# What a browser without conditional mediation says (so only the button signs in).
WITHOUT_CONDITIONAL_UI = (
    "if (window.PublicKeyCredential) "
    "{ PublicKeyCredential.isConditionalMediationAvailable = async () => false; }"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def localhost_api(
    smtp: SmtpTestServer,
    env_for: Callable[..., dict[str, str]],
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> Api:
    port = free_port()
    base = f"http://localhost:{port}"
    environ = env_for(ISSUER=base, WEBAUTHN_RP_ID="localhost", WEBAUTHN_ORIGINS=base)
    settings = load_settings(environ)
    app: web.Application = create_app(settings)
    client = await aiohttp_client(app, server_kwargs={"port": port, "host": "127.0.0.1"})
    return Api(client, smtp, settings, app[CONTAINER], environ)


async def virtual_authenticator(page: Any) -> tuple[Any, str]:
    """A platform authenticator that verifies the user and answers without a touch."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    added = await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    return cdp, str(added["authenticatorId"])


async def test_add_a_passkey_sign_out_and_sign_in_with_it(
    localhost_api: Api, chromium: Any
) -> None:
    api = localhost_api
    base = api.settings.issuer
    await api.register_verified(EMAIL)
    context = await chromium.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))
    cdp, authenticator_id = await virtual_authenticator(page)

    # Sign in with the password, then add a passkey on the account page.
    await page.goto(base + "/ui/sign-in")
    await page.fill("#f-email", EMAIL)
    await page.fill("#f-password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action^='/ui/sign-in'] button[value=password]")
    assert page.url == base + "/ui/account"
    await page.fill("form#passkey-add #f-name", "Test laptop")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Add a passkey").click()
    assert "notice=passkey_added" in page.url, errors
    assert await page.locator("ul.passkeys li").count() == 1
    assert "Test laptop" in await page.locator("ul.passkeys").inner_text()
    stored = await cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
    assert len(stored["credentials"]) == 1 and stored["credentials"][0]["isResidentCredential"]
    assert (await axe_findings(page, axe_source())) == []

    # Sign out: the sign-in page offers the passkey through the browser's autofill
    # (conditional mediation), which the virtual authenticator answers at once.
    async with page.expect_navigation():
        await page.click("form[action^='/ui/sign-out'] button[type=submit]")
    await page.wait_for_url(base + "/ui/account")
    assert "Test laptop" in await page.locator("ul.passkeys").inner_text()

    # Without autofill, the button: sign out, sign in with the passkey alone.
    await context.add_init_script(WITHOUT_CONDITIONAL_UI)
    async with page.expect_navigation():
        await page.click("form[action^='/ui/sign-out'] button[type=submit]")
    assert "/ui/sign-in" in page.url
    button = page.get_by_role("button", name="Sign in with a passkey")
    await button.wait_for(state="visible")
    async with page.expect_navigation(url=base + "/ui/account"):
        await button.click()
    assert await page.locator("h1").inner_text() == "Your account"
    assert not [text for text in errors if "Content Security Policy" in text]

    # The sign-in was the passkey's, at aal2.
    reader = await api.api_key("events:read")
    events = await (await api.get("/admin/events?type=login.succeeded", token=reader)).json()
    methods = [(event["data"]["method"], event["data"]["aal"]) for event in events["items"]]
    assert methods[:2] == [("passkey", "aal2")] * 2

    # Rename and remove without JavaScript's help: plain forms.
    await page.fill("ul.passkeys input[name=name]", "Work laptop")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Rename").click()
    assert "Work laptop" in await page.locator("ul.passkeys").inner_text()
    async with page.expect_navigation():
        await page.get_by_role("button", name="Remove the passkey Work laptop").click()
    assert "notice=passkey_removed" in page.url
    assert await page.locator("ul.passkeys li").count() == 0
    await context.close()


async def test_a_deleted_passkey_is_refused_on_the_sign_in_page(
    localhost_api: Api, chromium: Any
) -> None:
    api = localhost_api
    base = api.settings.issuer
    tokens = await api.register_verified(EMAIL)
    context = await chromium.new_context()
    await context.add_init_script(WITHOUT_CONDITIONAL_UI)
    page = await context.new_page()
    await virtual_authenticator(page)
    # Add the passkey through the pages, then delete it through the API.
    await page.goto(base + "/ui/sign-in")
    await page.fill("#f-email", EMAIL)
    await page.fill("#f-password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form[action^='/ui/sign-in'] button[value=password]")
    async with page.expect_navigation():
        await page.get_by_role("button", name="Add a passkey").click()
    listed = await (await api.get("/auth/passkeys", token=tokens["access_token"])).json()
    (passkey,) = listed["items"]
    response = await api.delete(f"/auth/passkeys/{passkey['id']}", token=tokens["access_token"])
    assert response.status == 204
    async with page.expect_navigation():
        await page.click("form[action^='/ui/sign-out'] button[type=submit]")

    button = page.get_by_role("button", name="Sign in with a passkey")
    await button.wait_for(state="visible")
    async with page.expect_navigation():
        await button.click()

    assert "/ui/sign-in" in page.url
    alert = await page.locator("p.error[role=alert]").first.inner_text()
    assert "not registered here" in alert
    await context.close()
