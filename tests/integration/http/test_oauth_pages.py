"""The sign-in step through the hosted pages (section 16): the browser goes from
/oauth2/authorize to /ui/sign-in, signs in with a password, and comes back for its code."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import aiohttp.web
import jwt
import pytest
from aiohttp.test_utils import TestClient
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from identity.application.ports import BrowserSignIn
from tests.integration.http.browser import chromium
from tests.integration.http.conftest import PASSWORD
from tests.integration.http.oauth_support import OAuthApi, start_oauth_api
from tests.integration.http.pages_client import PageClient
from tests.smtp_server import SmtpTestServer

RP = "https://rp.example/cb"
__all__ = ["chromium"]  # fixture


@pytest.fixture
async def oauth(
    smtp: SmtpTestServer,
    migrated_postgres_url: str,
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> OAuthApi:
    return await start_oauth_api(smtp, migrated_postgres_url, aiohttp_client, fake_browsers=False)


async def test_the_code_flow_signs_in_on_the_hosted_pages_and_comes_back(
    oauth: OAuthApi,
) -> None:
    client_id, secret = await oauth.confidential(first_party=True)
    await oauth.api.register_verified("pages-rp@example.com")
    pages = PageClient(oauth.api)
    verifier = generate_token(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": RP,
            "scope": "openid email",
            "state": "st",
            "nonce": "nn",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            "login_hint": "pages-rp@example.com",
        }
    )
    response = await pages.get(f"/oauth2/authorize?{query}")
    assert response.status == 302
    sign_in = response.headers["Location"]
    assert urlsplit(sign_in).path == "/ui/sign-in"

    await pages.get(sign_in)
    response = await pages.post(
        sign_in,
        {"email": "pages-rp@example.com", "password": PASSWORD, "action": "password"},
    )
    assert response.status == 303, pages.html
    back = response.headers["Location"]
    assert back.startswith("/oauth2/authorize?")
    response = await pages.get(back)
    assert response.status == 302, pages.html
    location = urlsplit(response.headers["Location"])
    returned = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == RP
    assert returned["state"] == ["st"] and returned["iss"] == [oauth.api.settings.issuer]

    answer = await oauth.api.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": returned["code"][0],
            "redirect_uri": RP,
            "code_verifier": verifier,
        },
        headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)},
    )
    tokens = await answer.json()
    assert answer.status == 200, tokens
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "nn" and claims["email"] == "pages-rp@example.com"
    assert claims["amr"] == ["pwd"] and claims["acr"] == "aal1"

    # The browser is signed in now: the next authorization needs no page at all.
    again = await pages.get(f"/oauth2/authorize?{query}")
    assert again.status == 302 and "code=" in again.headers["Location"]
    # After sign-out on the pages, prompt=none says login_required.
    none_query = query + "&prompt=none"
    await pages.get("/ui/account")
    await pages.post("/ui/sign-out", {})
    response = await pages.get(f"/oauth2/authorize?{none_query}")
    assert parse_qs(urlsplit(response.headers["Location"]).query)["error"] == ["login_required"]


async def test_the_account_page_lists_and_disconnects_applications(oauth: OAuthApi) -> None:
    client_id, _ = await oauth.confidential(first_party=False, name="Agent Smith")
    await oauth.api.register_verified("apps@example.com")
    pages = PageClient(oauth.api)
    await pages.get("/ui/sign-in")
    response = await pages.post(
        "/ui/sign-in", {"email": "apps@example.com", "password": PASSWORD, "action": "password"}
    )
    assert response.status == 303, pages.html
    async with oauth.api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        account = await uow.accounts.get_by_email(tenant.id, "apps@example.com")
        assert account is not None
        client = await uow.oauth_clients.get(client_id)
        assert client is not None

    await oauth.api.container.grant_consent()(
        tenant,
        BrowserSignIn(account.id, account.id, account.created_at, "aal1", ("pwd",)),
        client,
        ("openid", "email"),
    )
    response = await pages.get("/ui/account")
    assert response.status == 200
    assert "Connected applications" in pages.html and "Agent Smith" in pages.html
    # The form is read by the declared parser: a missing or oversized client_id is a 422
    # on the page, and nothing is revoked.
    for bad in ({}, {"client_id": "x" * 65}):
        response = await pages.post("/ui/account/applications/revoke", bad)
        assert response.status == 422 and "Agent Smith" in pages.html
    assert len(await oauth.api.container.user_grants().list(tenant.id, account.id)) == 1
    response = await pages.post("/ui/account/applications/revoke", {"client_id": client_id})
    assert response.status == 303, pages.html
    assert "notice=application_revoked" in response.headers["Location"]
    assert await oauth.api.container.user_grants().list(tenant.id, account.id) == []


@pytest.mark.browser
async def test_in_a_real_browser_sign_in_consent_and_back_to_the_client(
    oauth: OAuthApi,
    chromium: Any,
    aiohttp_server: Callable[..., Awaitable[Any]],
) -> None:
    """Chromium follows the whole code flow: authorize, the sign-in page, the consent
    page, and the redirect to the client's (loopback) callback with the code."""

    async def callback_page(request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(text="callback")

    receiver = aiohttp.web.Application()
    receiver.router.add_get("/cb", callback_page)
    server = await aiohttp_server(receiver)
    callback = f"http://127.0.0.1:{server.port}/cb"
    client_id, secret = await oauth.confidential(
        first_party=False, name="Browser RP", redirect_uris=(callback,)
    )
    await oauth.api.register_verified("browser-rp@example.com")
    verifier = generate_token(48)
    query = urlencode(
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": callback,
            "scope": "openid email",
            "state": "browser-state",
            "nonce": "browser-nonce",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
    )
    context = await chromium.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{oauth.base}/oauth2/authorize?{query}")
        assert "/ui/sign-in" in page.url
        await page.fill("#f-email", "browser-rp@example.com")
        await page.fill("#f-password", PASSWORD)
        async with page.expect_navigation():
            await page.click("button[value=password]")
        assert "/ui/consent" in page.url, page.url
        assert await page.locator("h1").count() == 1
        async with page.expect_navigation(url=f"{callback}**"):
            await page.click("button[value=allow]")
        returned = parse_qs(urlsplit(page.url).query)
    finally:
        await context.close()
    assert returned["state"] == ["browser-state"]
    assert returned["iss"] == [oauth.api.settings.issuer]
    answer = await oauth.api.client.post(
        "/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": returned["code"][0],
            "redirect_uri": callback,
            "code_verifier": verifier,
        },
        headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)},
    )
    tokens = await answer.json()
    assert answer.status == 200, tokens
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "browser-nonce" and claims["aud"] == client_id
