"""Registered OAuth clients over the admin API and the CLI (section 17)."""

from __future__ import annotations

import asyncio

import pytest

from identity.entrypoints.cli import main as cli
from tests.integration.http.conftest import Api, problem_of

APP = {"name": "Billing", "redirect_uris": ["https://billing.example.com/cb"]}


async def test_a_confidential_client_is_created_with_its_secret_shown_once(api: Api) -> None:
    key = await api.api_key("clients:manage")
    response = await api.post("/admin/clients", APP, token=key)
    assert response.status == 201, await response.text()
    created = await response.json()
    secret = created["client_secret"]
    assert isinstance(secret, str) and len(secret) >= 40
    assert created["type"] == "confidential"
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    assert created["id_token_signed_response_alg"] == "RS256"
    assert "openid" in created["allowed_scopes"]
    client_id = created["client_id"]

    read = await (await api.get(f"/admin/clients/{client_id}", token=key)).json()
    assert "client_secret" not in read and read["client_id"] == client_id
    listed = await (await api.get("/admin/clients", token=key)).json()
    assert [item["client_id"] for item in listed["items"]] == [client_id]
    assert secret not in str(listed)
    async with api.container.uow() as uow:
        stored = await uow.oauth_clients.get(client_id)
    assert stored is not None and stored.secret_digest and secret not in stored.secret_digest

    rotated = await api.post(f"/admin/clients/{client_id}/rotate-secret", token=key)
    assert rotated.status == 200
    new_secret = (await rotated.json())["client_secret"]
    assert new_secret != secret

    changed = await api.patch(
        f"/admin/clients/{client_id}", {"name": "Billing 2", "first_party": True}, token=key
    )
    assert changed.status == 200, await changed.text()
    assert (await changed.json())["first_party"] is True

    events = await (
        await api.get("/admin/events?type=client.created", token=await api.api_key("events:read"))
    ).json()
    assert events["items"][0]["data"]["client_id"] == client_id
    assert secret not in str(events)

    assert (await api.delete(f"/admin/clients/{client_id}", token=key)).status == 204
    await problem_of(await api.get(f"/admin/clients/{client_id}", token=key), 404, "not_found")
    await problem_of(await api.delete(f"/admin/clients/{client_id}", token=key), 404, "not_found")


async def test_a_public_client_has_no_secret_and_cannot_use_client_credentials(api: Api) -> None:
    key = await api.api_key("clients:manage")
    body = {"name": "CLI", "type": "public", "redirect_uris": ["http://127.0.0.1/callback"]}
    created = await (await api.post("/admin/clients", body, token=key)).json()
    assert created["client_secret"] is None
    assert created["token_endpoint_auth_method"] == "none"
    assert "client_credentials" not in created["grant_types"]
    response = await api.post(f"/admin/clients/{created['client_id']}/rotate-secret", token=key)
    await problem_of(response, 422, "validation_error")
    bad = {**body, "grant_types": ["client_credentials"]}
    await problem_of(await api.post("/admin/clients", bad, token=key), 422, "validation_error")


async def test_registrations_breaking_the_rules_are_refused(api: Api) -> None:
    key = await api.api_key("clients:manage")
    for uris in (
        ["https://app.example.com/cb#fragment"],
        ["http://app.example.com/cb"],  # http off loopback
        ["javascript:alert(1)"],
        ["/relative"],
    ):
        response = await api.post("/admin/clients", {**APP, "redirect_uris": uris}, token=key)
        body = await problem_of(response, 422, "validation_error")
        assert body["errors"][0]["field"] == "redirect_uris"
    unknown_scope = {**APP, "allowed_scopes": ["openid", "payments:write"]}
    await problem_of(
        await api.post("/admin/clients", unknown_scope, token=key), 422, "validation_error"
    )


async def test_the_scope_and_the_tenant_are_enforced(api: Api) -> None:
    reader = await api.api_key("users:read")
    await problem_of(await api.get("/admin/clients", token=reader), 403, "insufficient_scope")
    key = await api.api_key("clients:manage")
    created = await (await api.post("/admin/clients", APP, token=key)).json()
    await api.container.tenant_admin().create("other", "Other")
    other = await api.api_key("clients:manage", tenant="other")
    response = await api.get(
        f"/admin/clients/{created['client_id']}", token=other, headers={"X-Tenant": "other"}
    )
    await problem_of(response, 404, "not_found")


async def test_the_cli_creates_lists_rotates_and_deletes(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.environ is not None
    for name, value in api.environ.items():
        monkeypatch.setenv(name, value)
    argv = ["clients", "create", "--name", "Shop", "--redirect-uri", "https://shop.example/cb"]
    assert await asyncio.to_thread(cli, argv) == 0
    out = capsys.readouterr().out
    secret = out.strip().splitlines()[-1]
    async with api.container.uow() as uow:
        tenant = await uow.tenants.get_by_slug("default")
        assert tenant is not None
        clients = await uow.oauth_clients.list_page(tenant.id, None, 10)
    assert [c.name for c in clients] == ["Shop"]
    client_id = clients[0].client_id
    assert secret not in (clients[0].secret_digest or "")
    assert await asyncio.to_thread(cli, ["clients", "list"]) == 0
    assert client_id in capsys.readouterr().out
    assert await asyncio.to_thread(cli, ["clients", "rotate-secret", client_id]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] != secret
    assert await asyncio.to_thread(cli, ["clients", "delete", client_id]) == 0
    assert await asyncio.to_thread(cli, ["clients", "delete", client_id]) == 1
