"""/admin/tenants (tenants:manage) and the pages of /admin/api-keys, on Postgres."""

from __future__ import annotations

from typing import Any

from tests.integration.http.conftest import Api, problem_of

TENANTS = "/admin/tenants"


async def test_the_operator_creates_lists_and_changes_tenants(api: Api) -> None:
    operator = await api.api_key("tenants:manage")
    response = await api.post(TENANTS, {"slug": "acme", "name": "Acme Inc."}, token=operator)
    assert response.status == 201, await response.text()
    acme = await response.json()
    assert (acme["slug"], acme["name"], acme["disabled"]) == ("acme", "Acme Inc.", False)
    await problem_of(
        await api.post(TENANTS, {"slug": "acme"}, token=operator), 409, "tenant_exists"
    )
    for slug in ("Not A Slug", "-dash", "x" * 64):
        response = await api.post(TENANTS, {"slug": slug}, token=operator)
        body = await problem_of(response, 422, "validation_error")
        assert [error["field"] for error in body["errors"]] == ["slug"]
    listed = await (await api.get(TENANTS, token=operator)).json()
    assert [item["slug"] for item in listed["items"]] == ["acme", "default"]

    settings: dict[str, Any] = {"access_token_ttl": "600", "google_client_secret": "s3cret-value"}
    response = await api.patch(
        f"{TENANTS}/acme", {"name": "Acme", "settings": settings}, token=operator
    )
    assert response.status == 200, await response.text()
    changed = await response.json()
    assert changed["name"] == "Acme"
    assert changed["settings"] == {"access_token_ttl": "600", "google_client_secret": "********"}
    assert "s3cret-value" not in str(await (await api.get(TENANTS, token=operator)).json())
    # Removing a setting: null.
    response = await api.patch(
        f"{TENANTS}/acme", {"settings": {"access_token_ttl": None}}, token=operator
    )
    assert "access_token_ttl" not in (await response.json())["settings"]

    for body, field in (
        ({"settings": {"access_token_ttl": "-5"}}, "settings"),
        ({"settings": {"no_such_setting": "1"}}, "settings"),
        ({"settings": "access_token_ttl=5"}, "settings"),
        ({"disabled": "yes"}, "disabled"),
    ):
        response = await api.patch(f"{TENANTS}/acme", body, token=operator)
        problem = await problem_of(response, 422, "validation_error")
        assert [error["field"] for error in problem["errors"]] == [field]
    response = await api.patch(f"{TENANTS}/default", {"disabled": True}, token=operator)
    await problem_of(response, 422, "validation_error")
    for slug in ("nope", "NOT%20A%20SLUG"):
        response = await api.patch(f"{TENANTS}/{slug}", {"name": "x"}, token=operator)
        await problem_of(response, 404, "not_found")

    # Disabling takes the tenant away at once (in this process; others within seconds).
    assert (
        await api.post("/auth/register", {"email": "a@example.com"}, headers={"X-Tenant": "acme"})
    ).status == 202
    response = await api.patch(f"{TENANTS}/acme", {"disabled": True}, token=operator)
    assert (await response.json())["disabled"] is True
    response = await api.post(
        "/auth/register", {"email": "a@example.com"}, headers={"X-Tenant": "acme"}
    )
    await problem_of(response, 404, "tenant_not_found")


async def test_tenants_need_the_operators_scope(api: Api) -> None:
    await api.container.tenant_admin().create("acme")
    everything_else = await api.api_key("users:read", "users:write", "api-keys:manage")
    acme_manager = await api.api_key("api-keys:manage", tenant="acme")
    for key in (everything_else, acme_manager):
        await problem_of(await api.get(TENANTS, token=key), 403, "insufficient_scope")
        response = await api.post(TENANTS, {"slug": "evil"}, token=key)
        await problem_of(response, 403, "insufficient_scope")
        response = await api.patch(f"{TENANTS}/acme", {"disabled": True}, token=key)
        await problem_of(response, 403, "insufficient_scope")
    # An acme key cannot mint itself the operator's scope either.
    response = await api.post(
        "/admin/api-keys", {"name": "x", "scopes": ["tenants:manage"]}, token=acme_manager
    )
    await problem_of(response, 403, "insufficient_scope")
    await problem_of(await api.get(TENANTS), 401, "invalid_api_key")
    operator = await api.api_key("tenants:manage")
    listed = await (await api.get(TENANTS, token=operator)).json()
    assert [item["slug"] for item in listed["items"]] == ["acme", "default"]
    assert not listed["items"][0]["disabled"]


async def test_api_keys_are_listed_in_keyset_pages(api: Api) -> None:
    manager = await api.api_key("api-keys:manage")
    for n in range(4):
        response = await api.post(
            "/admin/api-keys", {"name": f"k{n}", "scopes": ["api-keys:manage"]}, token=manager
        )
        assert response.status == 201
    names: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    pages = 0
    while True:
        body = await (await api.get("/admin/api-keys", token=manager, params=params)).json()
        names += [item["name"] for item in body["items"]]
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert names == ["test", "k0", "k1", "k2", "k3"] and pages == 3
    response = await api.get("/admin/api-keys", token=manager, params={"cursor": "bm9wZQ"})
    await problem_of(response, 422, "validation_error")
