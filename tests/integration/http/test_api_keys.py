"""API keys over HTTP and the CLI: format, scopes, tenants, revocation, refusals."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from identity.entrypoints.cli import main as cli
from tests.integration.http.conftest import Api, problem_of


async def run_cli(argv: list[str]) -> int:
    # The CLI runs its own event loop, so it gets a thread of its own.
    return await asyncio.to_thread(cli, argv)


async def test_a_key_mints_a_key_shown_once_and_stored_only_as_a_hash(api: Api) -> None:
    manager = await api.api_key("api-keys:manage", "users:read")
    response = await api.post(
        "/admin/api-keys", {"name": "billing", "scopes": ["users:read"]}, token=manager
    )
    assert response.status == 201, await response.text()
    created = await response.json()
    key = created["key"]
    prefix, key_hex, secret = key.split("_", 2)
    assert prefix == "idk" and uuid.UUID(hex=key_hex) == uuid.UUID(created["id"])
    assert len(secret) >= 40
    assert created["scopes"] == ["users:read"] and created["name"] == "billing"

    listed = await (await api.get("/admin/api-keys", token=manager)).json()
    assert created["id"] in {item["id"] for item in listed["items"]}
    assert key not in str(listed) and secret not in str(listed)
    assert listed["next_cursor"] is None
    async with api.container.uow() as uow:
        stored = await uow.api_keys.get(uuid.UUID(created["id"]))
    assert stored is not None and secret not in stored.secret_digest


async def test_missing_malformed_unknown_and_wrong_kind_credentials_are_invalid_api_key(
    api: Api,
) -> None:
    manager = await api.api_key("api-keys:manage")
    _, key_hex, secret = manager.split("_", 2)
    tokens = await api.register_verified("ada-keys@example.com")
    for token in (
        None,
        "idk_",
        "idk_nothex_secret",
        f"idk_{uuid.uuid4().hex}_{secret}",  # unknown id
        f"idk_{key_hex}_{secret}x",  # wrong secret
        tokens["access_token"],  # an access token is never an API key
    ):
        response = await api.get("/admin/api-keys", token=token)
        await problem_of(response, 401, "invalid_api_key")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # ... nor the reverse.
    await problem_of(await api.me(manager), 401, "invalid_token")


async def test_a_key_without_the_scope_is_refused(api: Api) -> None:
    reader = await api.api_key("users:read")
    response = await api.get("/admin/api-keys", token=reader)
    await problem_of(response, 403, "insufficient_scope")


async def test_a_key_cannot_grant_what_it_lacks(api: Api) -> None:
    manager = await api.api_key("api-keys:manage", "users:read")
    response = await api.post(
        "/admin/api-keys", {"name": "x", "scopes": ["users:write"]}, token=manager
    )
    await problem_of(response, 403, "insufficient_scope")
    response = await api.post("/admin/api-keys", {"name": "x", "scopes": []}, token=manager)
    await problem_of(response, 422, "validation_error")
    response = await api.post(
        "/admin/api-keys", {"name": "x", "scopes": ["users:everything"]}, token=manager
    )
    body = await problem_of(response, 422, "validation_error")
    assert [error["field"] for error in body["errors"]] == ["scopes"]
    listed = await (await api.get("/admin/api-keys", token=manager)).json()
    assert len(listed["items"]) == 1  # nothing was created by the refusals


async def test_tenants_manage_only_for_the_default_tenant(api: Api) -> None:
    await api.container.tenant_admin().create("acme")
    assert await api.api_key("tenants:manage")  # the operator's key
    try:
        await api.api_key("tenants:manage", tenant="acme")
    except Exception as error:
        assert type(error).__name__ == "ScopeNotGrantableError"
    else:
        raise AssertionError("a tenant key got tenants:manage")


async def test_revocation_is_immediate_and_tenants_do_not_see_each_other(api: Api) -> None:
    await api.container.tenant_admin().create("acme")
    acme = await api.api_key("api-keys:manage", tenant="acme")
    default = await api.api_key("api-keys:manage")
    default_id = str(uuid.UUID(hex=default.split("_")[1]))

    # A key acts on its own tenant only, whatever X-Tenant says.
    response = await api.get("/admin/api-keys", token=acme, headers={"X-Tenant": "default"})
    await problem_of(response, 403, "insufficient_scope")
    ok = await api.get("/admin/api-keys", token=acme, headers={"X-Tenant": "acme"})
    assert ok.status == 200
    assert default_id not in {item["id"] for item in (await ok.json())["items"]}
    # Another tenant's key is not found, and stays working.
    response = await api.delete(f"/admin/api-keys/{default_id}", token=acme)
    await problem_of(response, 404, "not_found")
    await problem_of(await api.delete("/admin/api-keys/not-an-id", token=acme), 404, "not_found")
    assert (await api.get("/admin/api-keys", token=default)).status == 200

    response = await api.delete(f"/admin/api-keys/{default_id}", token=default)
    assert response.status == 204
    await problem_of(await api.get("/admin/api-keys", token=default), 401, "invalid_api_key")
    listed = await (await api.get("/admin/api-keys", token=acme)).json()
    assert len(listed["items"]) == 1


async def test_the_cli_creates_lists_and_revokes(
    api: Api, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.environ is not None
    for name, value in api.environ.items():
        monkeypatch.setenv(name, value)
    scopes = "users:read,api-keys:manage"
    assert await run_cli(["apikeys", "create", "--name", "ops", "--scopes", scopes]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("idk_")
    assert (await api.get("/admin/api-keys", token=key)).status == 200

    assert await run_cli(["apikeys", "list"]) == 0
    listing = capsys.readouterr().out
    assert key.split("_", 2)[2] not in listing and '"ops"' in listing

    key_id = str(uuid.UUID(hex=key.split("_")[1]))
    assert await run_cli(["apikeys", "revoke", key_id]) == 0
    capsys.readouterr()
    await problem_of(await api.get("/admin/api-keys", token=key), 401, "invalid_api_key")
    assert await run_cli(["apikeys", "create", "--name", "x", "--scopes", "nope"]) == 1
    assert "unknown scope" in capsys.readouterr().err
