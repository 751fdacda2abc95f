"""The account page's organizations: list, act in one, manage members and invitations,
and the invitation mail's link to /ui/invitations."""

from __future__ import annotations

import re

from tests.integration.http.pages_client import PageClient, pages
from tests.integration.http.test_pages import EMAIL, sign_in, sign_up

__all__ = ["pages"]  # fixture

BOB = "bob@example.com"


async def test_an_owner_invites_from_the_account_page_and_the_invitee_joins(
    pages: PageClient,
) -> None:
    await sign_up(pages)
    await pages.get("/ui/account")
    assert "You do not belong to an organization." in pages.text()
    ada = await pages.api.login(EMAIL)
    response = await pages.api.post(
        "/auth/organizations", {"name": "Acme"}, token=ada["access_token"]
    )
    assert response.status == 201
    org = (await response.json())["id"]

    await pages.get("/ui/account")
    assert "Acme" in pages.html and "owner" in pages.text()
    response = await pages.post("/ui/account/organizations/switch", {"organization_id": org})
    assert response.headers["Location"] == "/ui/account?notice=organization_switched"

    response = await pages.post(
        "/ui/account/organizations/invite",
        {"organization_id": org, "email": BOB, "role": "admin"},
    )
    assert response.headers["Location"] == "/ui/account?notice=invitation_sent", pages.html
    mail = await pages.api.next_mail(BOB)
    body = mail.get_body(("plain",))
    assert body is not None
    link = re.search(r"https?://[^/\s]+(/ui/invitations\?code=[A-Za-z0-9_-]+)", body.get_content())
    assert link is not None
    await pages.get("/ui/account")
    assert BOB in pages.html  # the pending invitation

    # A non-member role is refused clearly, nothing changes.
    response = await pages.post(
        "/ui/account/organizations/invite",
        {"organization_id": org, "email": "eve@example.com", "role": "nope"},
    )
    assert response.status == 422

    # Bob follows the link in his browser (the test's cookie jar, emptied): sign up, accept.
    pages.client.session.cookie_jar.clear()
    bob = pages
    await sign_up(bob, BOB)
    response = await bob.get(link.group(1))
    assert response.status == 200 and "Join an organization" in bob.html
    code = link.group(1).split("code=")[1]
    response = await bob.post("/ui/invitations", {"code": code})
    assert response.headers["Location"] == "/ui/account?notice=invitation_accepted", bob.html
    await bob.get("/ui/account")
    assert "Acme" in bob.html and "admin" in bob.text()

    # The owner, signed in again, sees bob among the members and removes him.
    pages.client.session.cookie_jar.clear()
    await sign_in(pages)
    await pages.get("/ui/account")
    bob_id = (await pages.api.login(BOB))["user"]["id"]
    assert BOB in pages.html
    response = await pages.post(
        "/ui/account/organizations/members/role",
        {"organization_id": org, "user_id": bob_id, "role": "member"},
    )
    assert response.status == 303
    response = await pages.post(
        "/ui/account/organizations/members/remove", {"organization_id": org, "user_id": bob_id}
    )
    assert response.headers["Location"] == "/ui/account?notice=member_removed"
    ada_id = ada["user"]["id"]
    response = await pages.post(
        "/ui/account/organizations/members/remove", {"organization_id": org, "user_id": ada_id}
    )
    assert response.status == 409
    assert "An organization always keeps an owner" in pages.text()


async def test_the_invitation_link_asks_to_sign_in_first(pages: PageClient) -> None:
    response = await pages.get("/ui/invitations?code=abc")
    assert response.status == 303
    assert response.headers["Location"].startswith("/ui/sign-in?return_to=")
