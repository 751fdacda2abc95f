"""Downstream services protected by organization permissions: ``require_permission`` and
``require_org`` on aiohttp handlers, ``dependency(require_permission=..., require_org=...)``
in FastAPI, against a real identity server (roles and memberships made over its API)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from fastapi import Depends, FastAPI

from identity_verifier import Verifier, require_org, require_permission

from identity_server import IdentityServer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@require_permission("invoices:read")
async def invoices(request: web.Request) -> web.Response:
    return web.json_response({"org": request["identity"]["org_id"]})


@require_org()
async def dashboard(request: web.Request) -> web.Response:
    return web.json_response({"org": request["identity"]["org_slug"]})


@require_permission("invoices:read")
async def public_invoices(request: web.Request) -> web.Response:
    return web.json_response({})


@pytest.fixture
async def downstream(
    make_verifier: Callable[..., Verifier],
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    verifier = make_verifier()
    app = web.Application(middlewares=[verifier.aiohttp_middleware(public={"/open"})])
    app.router.add_get("/invoices", invoices)
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/open", public_invoices)
    async with TestClient(TestServer(app)) as client:
        yield client


class People:
    """A billing member and a plain member of one organization, and an outsider."""

    def __init__(self, server: IdentityServer) -> None:
        self.server = server

    async def setup(self) -> None:
        key = await self.server.api_key("organizations:manage")
        admin = bearer(key)
        await self.server.post(
            "/admin/roles",
            {"name": "billing", "permissions": ["invoices:read"]},
            headers=admin,
        )
        self.billing = await self.server.sign_up()
        self.member = await self.server.sign_up()
        self.outsider = await self.server.sign_up()
        org = await self.server.post("/admin/organizations", {"name": "Acme"}, headers=admin)
        self.org_id = org["id"]
        for person, role in ((self.billing, "billing"), (self.member, "member")):
            await self.server.post(
                f"/admin/organizations/{self.org_id}/members",
                {"user_id": person["user"]["id"], "roles": [role]},
                headers=admin,
            )

    async def switched(self, person: dict[str, Any]) -> str:
        answer = await self.server.post(
            f"/auth/organizations/{self.org_id}/switch", {}, headers=bearer(person["access_token"])
        )
        return str(answer["access_token"])


@pytest.fixture
async def people(identity_server: IdentityServer) -> People:
    found = People(identity_server)
    await found.setup()
    return found


async def test_an_aiohttp_handler_needs_the_permission_of_the_tokens_organization(
    downstream: TestClient[web.Request, web.Application], people: People
) -> None:
    allowed = await downstream.get(
        "/invoices", headers=bearer(await people.switched(people.billing))
    )
    assert allowed.status == 200
    assert await allowed.json() == {"org": people.org_id}

    for token in (await people.switched(people.member), people.billing["access_token"]):
        refused = await downstream.get("/invoices", headers=bearer(token))
        assert refused.status == 403
        assert refused.content_type == "application/problem+json"
        assert (await refused.json())["code"] == "insufficient_permission"
    # No token at all: the middleware's 401, never the handler.
    assert (await downstream.get("/invoices")).status == 401
    # On a public path the decorator still refuses a request without identity.
    assert (await downstream.get("/open")).status == 401


async def test_require_org_refuses_a_token_outside_any_organization(
    downstream: TestClient[web.Request, web.Application], people: People
) -> None:
    inside = await downstream.get(
        "/dashboard", headers=bearer(await people.switched(people.member))
    )
    assert inside.status == 200 and await inside.json() == {"org": "acme"}
    outside = await downstream.get("/dashboard", headers=bearer(people.outsider["access_token"]))
    assert outside.status == 403


async def test_a_fastapi_dependency_checks_permission_and_organization(
    make_verifier: Callable[..., Verifier], people: People
) -> None:
    verifier = make_verifier()
    app = FastAPI()

    needs_invoices = verifier.dependency(require_permission="invoices:read")
    needs_org = verifier.dependency(require_org=True)

    @app.get("/invoices")
    async def read_invoices(
        claims: dict[str, Any] = Depends(needs_invoices),  # noqa: B008
    ) -> dict[str, Any]:
        return {"org": claims["org_id"]}

    @app.get("/dashboard")
    async def read_dashboard(
        claims: dict[str, Any] = Depends(needs_org),  # noqa: B008
    ) -> dict[str, Any]:
        return {"org": claims["org_slug"]}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        billing = bearer(await people.switched(people.billing))
        member = bearer(await people.switched(people.member))
        assert (await client.get("/invoices", headers=billing)).json() == {"org": people.org_id}
        assert (await client.get("/invoices", headers=member)).status_code == 403
        assert (await client.get("/dashboard", headers=member)).json() == {"org": "acme"}
        outsider = bearer(people.outsider["access_token"])
        assert (await client.get("/dashboard", headers=outsider)).status_code == 403
        assert (await client.get("/invoices")).status_code == 401


def test_a_permission_must_be_named() -> None:
    with pytest.raises(ValueError):
        require_permission("")
