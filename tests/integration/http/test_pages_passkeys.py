"""The passkey forms of the hosted pages without a browser: malformed posts are page
errors (never a 500), the forms need their CSRF token, the account lists passkeys."""

from __future__ import annotations

import json

import pytest

from tests.authenticator import SoftwareAuthenticator
from tests.integration.http.conftest import PASSWORD
from tests.integration.http.pages_client import PageClient, make_pages

__all__ = ["make_pages"]  # fixture

EMAIL = "ada@example.com"
ORIGIN = "https://id.example.test"


@pytest.fixture
async def pages(make_pages: object) -> PageClient:
    client: PageClient = await make_pages(  # type: ignore[operator]
        WEBAUTHN_RP_ID="id.example.test", WEBAUTHN_ORIGINS=ORIGIN
    )
    return client


async def signed_in(pages: PageClient) -> None:
    await pages.api.register_verified(EMAIL)
    await pages.get("/ui/sign-in")
    response = await pages.post(
        "/ui/sign-in", {"email": EMAIL, "password": PASSWORD, "action": "password"}
    )
    assert response.status == 303, await response.text()
    await pages.follow(response)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"flow_id": "x", "credential": "{not json"},
        {"flow_id": "x", "credential": "[1, 2]"},
        {"flow_id": "x", "credential": '{"id": "!!!", "rawId": "!!!", "response": {}}'},
        {"flow_id": "x" * 500, "credential": "{}"},
    ],
)
async def test_a_malformed_passkey_sign_in_is_a_page_error(
    pages: PageClient, fields: dict[str, str]
) -> None:
    await pages.get("/ui/sign-in")

    response = await pages.post("/ui/sign-in/passkey", fields)

    assert response.status == 400
    assert response.content_type == "text/html"
    assert "The passkey could not be used" in pages.text()
    assert pages.cookie("identity_session_default") is None


async def test_passkey_forms_need_the_csrf_token(pages: PageClient) -> None:
    await signed_in(pages)
    for path in (
        "/ui/sign-in/passkey",
        "/ui/account/passkeys/options",
        "/ui/account/passkeys/add",
        "/ui/account/passkeys/remove",
    ):
        response = await pages.post(path, {"flow_id": "x"}, csrf=False)
        assert response.status == 403, path


async def test_the_account_page_adds_lists_renames_and_removes(pages: PageClient) -> None:
    await signed_in(pages)
    assert "You have no passkeys yet." in pages.text()
    assert "Add a passkey" in pages.text()
    response = await pages.post("/ui/account/passkeys/options", {})
    assert response.status == 200
    flow = await response.json()
    credential = SoftwareAuthenticator(ORIGIN).create(flow["publicKey"])
    response = await pages.post(
        "/ui/account/passkeys/add",
        {"flow_id": flow["flow_id"], "credential": json.dumps(credential), "name": "Phone"},
    )
    await pages.follow(response)
    assert "Your passkey is added." in pages.text() and "Phone" in pages.text()
    listed = await pages.api.client.get("/auth/passkeys")  # no bearer: pages are cookies
    assert listed.status == 401
    passkey_id = pages.html.split('name="passkey_id" value="')[1].split('"')[0]

    response = await pages.post(
        "/ui/account/passkeys/rename", {"passkey_id": passkey_id, "name": "   "}
    )
    assert response.status == 422 and "Phone" in pages.text()
    # Past the form's bound (the API's), and past the domain's 64 characters: both refused.
    for name in ("x" * 257, "x" * 65):
        response = await pages.post(
            "/ui/account/passkeys/rename", {"passkey_id": passkey_id, "name": name}
        )
        assert response.status == 422 and "Phone" in pages.text()
    response = await pages.post(
        "/ui/account/passkeys/rename", {"passkey_id": passkey_id, "name": "  Tablet "}
    )
    await pages.follow(response)
    assert "Tablet" in pages.text()
    response = await pages.post("/ui/account/passkeys/remove", {"passkey_id": "not-an-id"})
    assert response.status == 404
    response = await pages.post("/ui/account/passkeys/remove", {"passkey_id": passkey_id})
    await pages.follow(response)
    assert "The passkey is removed." in pages.text()
    assert "You have no passkeys yet." in pages.text()


async def test_adding_needs_a_browser_session(pages: PageClient) -> None:
    await pages.get("/ui/sign-in")
    response = await pages.post("/ui/account/passkeys/options", {})
    assert response.status == 401
    response = await pages.post("/ui/account/passkeys/add", {"flow_id": "x", "credential": "{}"})
    assert response.status == 303 and "/ui/sign-in" in response.headers["Location"]
