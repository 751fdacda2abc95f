"""Tenant isolation of the admin API as a property, over HTTP on Postgres.

Hypothesis draws operations (create, read, find by email, disable, enable,
force logout, delete a user; a user's login) in the tenants ``default`` and
``acme``, each done with the API key of either tenant, over a small pool of
addresses used in both. A model per tenant and address predicts every answer:
a key reaches its own tenant's users only, another tenant's are 404 and stay
untouched. After every step each tenant's full list is exactly the model's,
and every token of a deleted or disabled user is refused.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.http.conftest import PASSWORD, Api

TENANTS = ("default", "acme")
EMAILS = ("ann", "bob")
KINDS = ("create", "create", "get", "find", "disable", "enable", "logout", "delete", "login")
SCOPES = ("users:read", "users:write", "sessions:write")


@attrs.frozen
class Op:
    kind: str
    tenant: int  # whose user
    email: int
    by: int  # whose key


operations = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    tenant=st.integers(0, 1),
    email=st.integers(0, 1),
    by=st.integers(0, 1),
)


@attrs.define
class User:
    id: str
    active: bool = True
    tokens: list[str] = attrs.field(factory=list)


class World:
    def __init__(self, api: Api, keys: tuple[str, str], prefix: str) -> None:
        self.api = api
        self.keys = keys
        self.prefix = prefix
        self.users: dict[tuple[int, int], User] = {}
        self.gone: list[tuple[str, list[str]]] = []  # (id, tokens) of deleted users

    def email(self, op: Op) -> str:
        return f"{self.prefix}-{EMAILS[op.email]}@example.com"

    async def request(self, op: Op, method: str, path: str, body: Any = None) -> Any:
        return await self.api.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {self.keys[op.by]}"}
        )

    def target(self, op: Op) -> str:
        user = self.users.get((op.tenant, op.email))
        return user.id if user else str(uuid.uuid4())

    async def apply(self, op: Op) -> None:
        user = self.users.get((op.tenant, op.email))
        own = op.by == op.tenant
        path = f"/admin/users/{self.target(op)}"
        if op.kind == "create":
            # The key creates in its own tenant, whatever the op's tenant.
            mine = self.users.get((op.by, op.email))
            body = {"email": self.email(op), "password": PASSWORD, "verified": True}
            response = await self.request(op, "POST", "/admin/users", body)
            assert response.status == (409 if mine else 201), await response.text()
            if not mine:
                self.users[(op.by, op.email)] = User((await response.json())["id"])
            return
        if op.kind == "find":
            response = await self.request(op, "GET", "/admin/users?email=" + self.email(op))
            found = [item["id"] for item in (await response.json())["items"]]
            mine = self.users.get((op.by, op.email))
            assert found == ([mine.id] if mine else [])
            return
        if op.kind == "login":
            response = await self.api.post(
                "/auth/login",
                {"email": self.email(op), "password": PASSWORD},
                headers={"X-Tenant": TENANTS[op.tenant]},
            )
            expected = 200 if user and user.active else (403 if user else 401)
            assert response.status == expected, await response.text()
            if user and expected == 200:
                user.tokens.append((await response.json())["access_token"])
            return
        method, body = {
            "get": ("GET", None),
            "disable": ("PATCH", {"is_active": False}),
            "enable": ("PATCH", {"is_active": True}),
            "logout": ("POST", None),
            "delete": ("DELETE", None),
        }[op.kind]
        response = await self.request(
            op, method, path + ("/logout" if op.kind == "logout" else ""), body
        )
        if not (own and user):
            assert response.status == 404, (op, await response.text())
            return
        assert response.status in (200, 204), (op, await response.text())
        if op.kind == "disable":
            user.active = False
            self.gone.append(("", user.tokens[:]))  # every session ended
            user.tokens.clear()
        elif op.kind == "enable":
            user.active = True
        elif op.kind == "logout":
            self.gone.append(("", user.tokens[:]))
            user.tokens.clear()
        elif op.kind == "delete":
            self.gone.append((user.id, user.tokens[:]))
            del self.users[(op.tenant, op.email)]

    async def check(self) -> None:
        for index in (0, 1):
            response = await self.api.client.get(
                "/admin/users?limit=200", headers={"Authorization": f"Bearer {self.keys[index]}"}
            )
            listed = {
                item["id"]: item["is_active"]
                for item in (await response.json())["items"]
                if item["email"].startswith(self.prefix)
            }
            expected = {
                user.id: user.active for (tenant, _), user in self.users.items() if tenant == index
            }
            assert listed == expected, TENANTS[index]
        for _, tokens in self.gone:
            for token in tokens:
                assert (await self.api.me(token)).status == 401
        for (tenant, _), user in self.users.items():
            for token in user.tokens:
                response = await self.api.get(
                    "/auth/me", token=token, headers={"X-Tenant": TENANTS[tenant]}
                )
                assert response.status == 200


@pytest.fixture
async def keys(api: Api) -> tuple[str, str]:
    await api.container.tenant_admin().create("acme")
    return (await api.api_key(*SCOPES), await api.api_key(*SCOPES, tenant="acme"))


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operations, min_size=6, max_size=14))
async def test_a_key_reaches_its_own_tenant_only(
    api: Api, keys: tuple[str, str], ops: list[Op]
) -> None:
    # The app is shared by the examples: each gets addresses of its own.
    world = World(api, keys, uuid.uuid4().hex[:8])
    for op in ops:
        await world.apply(op)
        await world.check()


async def test_a_scripted_run_through_both_tenants(api: Api, keys: tuple[str, str]) -> None:
    world = World(api, keys, "scripted")
    script = [Op("create", 0, 0, 0), Op("create", 1, 0, 1), Op("login", 0, 0, 0)]
    script += [Op(kind, 0, 0, 1) for kind in ("get", "disable", "logout", "delete")]
    script += [Op("login", 1, 0, 1), Op("disable", 1, 0, 1), Op("login", 1, 0, 1)]
    script += [Op("delete", 0, 0, 0), Op("create", 0, 0, 0), Op("find", 0, 0, 0)]
    for op in script:
        await world.apply(op)
        await world.check()
    assert set(world.users) == {(0, 0), (1, 0)}
    assert not world.users[(1, 0)].active and world.users[(0, 0)].active
