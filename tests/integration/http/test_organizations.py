"""Organizations over HTTP on Postgres: the membership life cycle, role changes reaching
tokens, the last-owner rule under concurrent removals, bad input, the admin API."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from typing import Any

from tests.integration.http.conftest import PASSWORD, Api, problem_of

ORGS = "/auth/organizations"
ADMIN_ORGS = "/admin/organizations"
MANAGE = "organizations:manage"


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT (already verified by the server that issued it)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def org_claims(token: str) -> dict[str, Any]:
    found = claims_of(token)
    return {k: found[k] for k in ("org_id", "org_slug", "org_roles", "permissions") if k in found}


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status == status, await response.text()
    return await response.json() if status != 204 else None


async def invitation_code(api: Api, address: str) -> str:
    mail = await api.next_mail(address)
    body = mail.get_body(("plain",))
    assert body is not None
    found = re.search(r"code=([A-Za-z0-9_-]+)", body.get_content())
    assert found is not None
    return found.group(1)


async def test_the_membership_life_cycle_reaches_tokens(api: Api) -> None:
    ada = await api.register_verified("ada@example.com")
    bob = await api.register_verified("bob@example.com")
    bob_id = bob["user"]["id"]
    admin_key = await api.api_key(MANAGE)
    introspector = await api.api_key("tokens:introspect")

    created = await ok(await api.post(ORGS, {"name": "Acme GmbH"}, token=ada["access_token"]), 201)
    assert (created["slug"], created["roles"]) == ("acme-gmbh", ["owner"])
    org = created["id"]
    mine = await ok(await api.get(ORGS, token=ada["access_token"]))
    assert [o["id"] for o in mine["items"]] == [org]

    # Not a member: 404; the invitation mail carries a code and a link to the pages.
    await problem_of(
        await api.get(f"{ORGS}/{org}/members", token=bob["access_token"]), 404, "not_found"
    )
    invited = await ok(
        await api.post(
            f"{ORGS}/{org}/invitations",
            {"email": "Bob@Example.com", "roles": ["member"]},
            token=ada["access_token"],
        ),
        201,
    )
    code = await invitation_code(api, "bob@example.com")
    assert code not in json.dumps(invited)
    pending = await ok(await api.get(f"{ORGS}/{org}/invitations", token=ada["access_token"]))
    assert [i["id"] for i in pending["items"]] == [invited["id"]]
    joined = await ok(
        await api.post("/auth/invitations/accept", {"code": code}, token=bob["access_token"])
    )
    assert joined["roles"] == ["member"]
    response = await api.post("/auth/invitations/accept", {"code": code}, token=bob["access_token"])
    await problem_of(response, 400, "invitation_invalid")

    members = await ok(await api.get(f"{ORGS}/{org}/members", token=bob["access_token"]))
    assert {m["email"] for m in members["items"]} == {"ada@example.com", "bob@example.com"}
    response = await api.patch(
        f"{ORGS}/{org}/members/{bob_id}", {"roles": ["admin"]}, token=bob["access_token"]
    )
    await problem_of(response, 403, "insufficient_permission")

    # Bob acts in the organization: the same session, org claims in the access token.
    switched = await ok(await api.post(f"{ORGS}/{org}/switch", token=bob["access_token"]))
    assert switched["refresh_token"] == bob["refresh_token"]
    assert org_claims(switched["access_token"]) == {
        "org_id": org,
        "org_slug": "acme-gmbh",
        "org_roles": ["member"],
        "permissions": [],
    }
    assert (await api.me(switched["access_token"])).status == 200

    # A role change and a permission given to the role reach the next refresh.
    await ok(
        await api.patch(
            f"{ORGS}/{org}/members/{bob_id}", {"roles": ["admin"]}, token=ada["access_token"]
        )
    )
    await ok(
        await api.patch(
            "/admin/roles/admin",
            {"permissions": ["invoices:read"]},
            headers={"Authorization": f"Bearer {admin_key}"},
        )
    )
    refreshed = await ok(
        await api.post("/auth/refresh-token", {"refresh_token": switched["refresh_token"]})
    )
    assert org_claims(refreshed["access_token"])["org_roles"] == ["admin"]
    assert org_claims(refreshed["access_token"])["permissions"] == [
        "invoices:read",
        "org:manage",
        "org:members:manage",
    ]

    # Removed: introspection says so at once, the next refresh carries no org claims.
    await ok(await api.delete(f"{ORGS}/{org}/members/{bob_id}", token=ada["access_token"]), 204)
    seen = await ok(
        await api.post(
            "/auth/introspect",
            {"token": refreshed["access_token"]},
            headers={"Authorization": f"Bearer {introspector}"},
        )
    )
    assert seen["active"] and "org_id" not in seen and "permissions" not in seen
    after = await ok(
        await api.post("/auth/refresh-token", {"refresh_token": refreshed["refresh_token"]})
    )
    assert org_claims(after["access_token"]) == {}
    await problem_of(
        await api.post(f"{ORGS}/{org}/switch", token=after["access_token"]), 404, "not_found"
    )

    # The last owner cannot leave; leaving the org context drops the claims.
    ada_id = ada["user"]["id"]
    response = await api.delete(f"{ORGS}/{org}/members/{ada_id}", token=ada["access_token"])
    await problem_of(response, 409, "last_owner")
    inside = await ok(await api.post(f"{ORGS}/{org}/switch", token=ada["access_token"]))
    assert org_claims(inside["access_token"])["org_roles"] == ["owner"]
    outside = await ok(await api.post(f"{ORGS}/none/switch", token=ada["access_token"]))
    assert org_claims(outside["access_token"]) == {}

    export = await ok(await api.get("/auth/me/export", token=ada["access_token"]))
    assert [(m["slug"], m["roles"]) for m in export["organizations"]] == [("acme-gmbh", ["owner"])]


async def test_two_owners_removing_each_other_at_once_leave_one_owner(api: Api) -> None:
    admin_key = await api.api_key(MANAGE)
    auth = {"Authorization": f"Bearer {admin_key}"}
    ada = await api.register_verified("ada@example.com")
    bob = await api.register_verified("bob@example.com")
    for round_ in range(6):
        created = await ok(
            await api.post(ORGS, {"name": f"Race {round_}"}, token=ada["access_token"]), 201
        )
        org = created["id"]
        await ok(
            await api.post(
                f"{ADMIN_ORGS}/{org}/members",
                {"user_id": bob["user"]["id"], "roles": ["owner"]},
                headers=auth,
            ),
            201,
        )

        async def remove(actor: dict[str, Any], target: dict[str, Any], org: str = org) -> int:
            response = await api.delete(
                f"{ORGS}/{org}/members/{target['user']['id']}", token=actor["access_token"]
            )
            return response.status

        statuses = sorted(await asyncio.gather(remove(ada, bob), remove(bob, ada)))
        assert statuses[0] == 204 and statuses[1] in (404, 409), statuses
        members = await ok(await api.get(f"{ADMIN_ORGS}/{org}/members", headers=auth))
        assert [m["roles"] for m in members["items"]] == [["owner"]]


async def test_bad_input_is_a_clear_4xx_never_a_500(api: Api) -> None:
    await api.container.tenant_admin().create("acme")
    ada = await api.register_verified("ada@example.com")
    token = ada["access_token"]
    key = await api.api_key(MANAGE)
    acme_key = await api.api_key(MANAGE, "users:write", tenant="acme")
    auth = {"Authorization": f"Bearer {key}"}
    acme_auth = {"Authorization": f"Bearer {acme_key}", "X-Tenant": "acme"}
    org = (await ok(await api.post(ORGS, {"name": "Acme"}, token=token), 201))["id"]
    member = f"{ORGS}/{org}/members/{ada['user']['id']}"

    for body in ({"name": "x" * 201}, {"name": ""}, {"name": "ok", "slug": "Not A Slug"}, {}):
        await problem_of(await api.post(ORGS, body, token=token), 422, "validation_error")
    for roles in (["nope"], [], [123], "owner", ["x" * 64], ["owner"] * 30):
        response = await api.patch(member, {"roles": roles}, token=token)
        await problem_of(response, 422, "validation_error")
    for body in (
        {"name": "billing", "permissions": ["has space"]},
        {"name": "billing", "permissions": "invoices:read"},
        {"name": "billing", "permissions": ["x" * 129]},
        {"name": "Bad Name"},
        {"name": "r", "permissions": [f"p{i}" for i in range(101)]},
    ):
        response = await api.post("/admin/roles", body, headers=auth)
        await problem_of(response, 422, "validation_error")
    await problem_of(
        await api.post("/admin/roles", {"name": "owner"}, headers=auth), 409, "built_in_role"
    )
    await problem_of(await api.delete("/admin/roles/owner", headers=auth), 409, "built_in_role")
    await problem_of(await api.delete("/admin/roles/ghost", headers=auth), 404, "not_found")
    big = {"name": "Big", "metadata": {"k": "v" * 5000}}
    await problem_of(await api.post(ADMIN_ORGS, big, headers=auth), 422, "validation_error")
    response = await api.post(
        f"{ORGS}/{org}/invitations", {"email": "not an email", "roles": ["member"]}, token=token
    )
    await problem_of(response, 422, "validation_error")
    response = await api.post("/auth/invitations/accept", {"code": "x" * 40}, token=token)
    await problem_of(response, 400, "invitation_invalid")

    # Ids that are no ids, and another tenant's ids, are not found.
    for path in (f"{ORGS}/not-a-uuid/members", f"{ORGS}/{uuid.uuid4()}/members"):
        await problem_of(await api.get(path, token=token), 404, "not_found")
    await problem_of(await api.post(f"{ORGS}/garbage/switch", token=token), 404, "not_found")
    for method, path in (
        ("GET", f"{ADMIN_ORGS}/{org}"),
        ("GET", f"{ADMIN_ORGS}/{org}/members"),
        ("DELETE", f"{ADMIN_ORGS}/{org}"),
    ):
        response = await api.client.request(method, path, headers=acme_auth)
        await problem_of(response, 404, "not_found")
    response = await api.post(
        f"{ADMIN_ORGS}/{org}/members",
        {"user_id": ada["user"]["id"], "roles": ["member"]},
        headers=acme_auth,
    )
    await problem_of(response, 404, "not_found")
    acme_org = (await ok(await api.post(ADMIN_ORGS, {"name": "Acme"}, headers=acme_auth), 201))[
        "id"
    ]
    response = await api.post(
        f"{ADMIN_ORGS}/{acme_org}/members",
        {"user_id": ada["user"]["id"], "roles": ["member"]},
        headers=acme_auth,
    )
    await problem_of(response, 404, "not_found")  # ada is a user of the default tenant
    await problem_of(await api.post(f"{ORGS}/{acme_org}/switch", token=token), 404, "not_found")
    # Nothing changed in the organization.
    members = await ok(await api.get(f"{ORGS}/{org}/members", token=token))
    assert [m["roles"] for m in members["items"]] == [["owner"]]


async def test_the_admin_api_manages_organizations_members_and_roles(api: Api) -> None:
    key = await api.api_key(MANAGE)
    auth = {"Authorization": f"Bearer {key}"}
    wrong = await api.api_key("users:read")
    response = await api.get(ADMIN_ORGS, headers={"Authorization": f"Bearer {wrong}"})
    await problem_of(response, 403, "insufficient_scope")

    created = [
        await ok(
            await api.post(ADMIN_ORGS, {"name": f"Org {i}", "metadata": {"i": i}}, headers=auth),
            201,
        )
        for i in range(3)
    ]
    assert created[0]["slug"] == "org-0" and created[0]["metadata"] == {"i": 0}
    first = await ok(await api.get(f"{ADMIN_ORGS}?limit=2", headers=auth))
    rest = await ok(
        await api.get(f"{ADMIN_ORGS}?limit=2&cursor={first['next_cursor']}", headers=auth)
    )
    assert [o["id"] for o in first["items"] + rest["items"]] == [o["id"] for o in created]
    assert rest["next_cursor"] is None

    org = created[0]["id"]
    changed = await ok(
        await api.patch(f"{ADMIN_ORGS}/{org}", {"name": "Renamed", "slug": "renamed"}, headers=auth)
    )
    assert (changed["name"], changed["slug"]) == ("Renamed", "renamed")
    response = await api.patch(
        f"{ADMIN_ORGS}/{created[1]['id']}", {"slug": "renamed"}, headers=auth
    )
    await problem_of(response, 409, "slug_taken")

    role = await ok(
        await api.post(
            "/admin/roles",
            {"name": "billing", "description": "pays", "permissions": ["invoices:read"]},
            headers=auth,
        ),
        201,
    )
    assert role == {
        "name": "billing",
        "description": "pays",
        "permissions": ["invoices:read"],
        "built_in": False,
    }
    roles = await ok(await api.get("/admin/roles", headers=auth))
    assert [r["name"] for r in roles["items"]] == ["admin", "billing", "member", "owner"]

    user = await api.register_verified("cy@example.com")
    user_id = user["user"]["id"]
    added = await ok(
        await api.post(
            f"{ADMIN_ORGS}/{org}/members", {"user_id": user_id, "roles": ["billing"]}, headers=auth
        ),
        201,
    )
    assert added["roles"] == ["billing"]
    response = await api.post(
        f"{ADMIN_ORGS}/{org}/members", {"user_id": user_id, "roles": ["member"]}, headers=auth
    )
    await problem_of(response, 409, "already_member")
    await ok(await api.delete("/admin/roles/billing", headers=auth), 204)
    members = await ok(await api.get(f"{ADMIN_ORGS}/{org}/members", headers=auth))
    assert [m["roles"] for m in members["items"]] == [[]]
    await ok(
        await api.patch(f"{ADMIN_ORGS}/{org}/members/{user_id}", {"roles": ["owner"]}, headers=auth)
    )
    response = await api.delete(f"{ADMIN_ORGS}/{org}/members/{user_id}", headers=auth)
    await problem_of(response, 409, "last_owner")
    await ok(await api.delete(f"{ADMIN_ORGS}/{org}", headers=auth), 204)
    await problem_of(await api.get(f"{ADMIN_ORGS}/{org}", headers=auth), 404, "not_found")
    mine = await ok(await api.get(ORGS, token=user["access_token"]))
    assert mine["items"] == []


async def test_a_tenant_may_refuse_user_organizations(api: Api) -> None:
    await api.container.tenant_admin().set("default", "allow_user_organizations", "false")
    api.container.resolve_tenant().forget()
    ada = await api.register_verified("ada@example.com")
    response = await api.post(ORGS, {"name": "Acme"}, token=ada["access_token"])
    await problem_of(response, 403, "organizations_disabled")


async def test_erasing_the_last_owner_hands_the_organization_to_its_admins(api: Api) -> None:
    key = await api.api_key(MANAGE)
    auth = {"Authorization": f"Bearer {key}"}
    ada = await api.register_verified("ada@example.com")
    bob = await api.register_verified("bob@example.com")
    kept = (await ok(await api.post(ORGS, {"name": "Kept"}, token=ada["access_token"]), 201))["id"]
    gone = (await ok(await api.post(ORGS, {"name": "Gone"}, token=ada["access_token"]), 201))["id"]
    await ok(
        await api.post(
            f"{ADMIN_ORGS}/{kept}/members",
            {"user_id": bob["user"]["id"], "roles": ["admin"]},
            headers=auth,
        ),
        201,
    )
    response = await api.delete("/auth/me", token=ada["access_token"], json={"password": PASSWORD})
    assert response.status == 204, await response.text()
    members = await ok(await api.get(f"{ADMIN_ORGS}/{kept}/members", headers=auth))
    assert [m["roles"] for m in members["items"]] == [["admin", "owner"]]
    await problem_of(await api.get(f"{ADMIN_ORGS}/{gone}", headers=auth), 404, "not_found")
