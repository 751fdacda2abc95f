"""Tenant isolation of organizations as a property, over HTTP on Postgres.

Hypothesis draws operations in the tenants ``default`` and ``acme``: create,
read and delete an organization, add and remove members, create a role (each
with the admin key of either tenant), and a user's switch into an
organization (a user of either tenant). A model predicts every answer: a key
or a user reaches its own tenant's organizations only; another tenant's are
404 and stay untouched. After every step each tenant's organizations, their
members, and each user's own list are exactly the model's.
"""

from __future__ import annotations

import uuid

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.http.conftest import PASSWORD, Api

TENANTS = ("default", "acme")
KINDS = ("create", "create", "get", "add", "add", "remove", "delete", "switch", "role")
ROLES = ("member", "admin", "owner")


@attrs.frozen
class Op:
    kind: str
    by: int  # whose key (or, for a switch, whose user: index into the users)
    org: int  # which organization created so far
    user: int  # which user (two per tenant)
    role: int


operations = st.builds(
    Op,
    kind=st.sampled_from(KINDS),
    by=st.integers(0, 1),
    org=st.integers(0, 7),
    user=st.integers(0, 3),
    role=st.integers(0, len(ROLES) - 1),
)


@attrs.define
class Org:
    id: str
    tenant: int
    members: dict[int, str] = attrs.field(factory=dict)  # user index -> role
    deleted: bool = False


@attrs.define
class User:
    id: str
    tenant: int
    access_token: str


class World:
    def __init__(self, api: Api, keys: tuple[str, str], users: list[User], prefix: str) -> None:
        self.api = api
        self.keys = keys
        self.users = users
        self.prefix = prefix
        self.orgs: list[Org] = []
        self.roles: tuple[set[str], set[str]] = (set(), set())

    def auth(self, by: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[by]}", "X-Tenant": TENANTS[by]}

    async def apply(self, op: Op) -> None:
        api, auth = self.api, self.auth(op.by)
        org = self.orgs[op.org % len(self.orgs)] if self.orgs else None
        user = self.users[op.user]
        if op.kind == "create" or org is None:
            response = await api.post(
                "/admin/organizations", {"name": f"{self.prefix} {len(self.orgs)}"}, headers=auth
            )
            assert response.status == 201, await response.text()
            self.orgs.append(Org((await response.json())["id"], op.by))
            return
        reachable = org.tenant == op.by and not org.deleted
        path = f"/admin/organizations/{org.id}"
        if op.kind == "get":
            response = await api.get(path, headers=auth)
            assert response.status == (200 if reachable else 404)
        elif op.kind == "delete":
            response = await api.delete(path, headers=auth)
            assert response.status == (204 if reachable else 404)
            if reachable:
                org.deleted = True
        elif op.kind == "add":
            role = ROLES[op.role]
            response = await api.post(
                f"{path}/members", {"user_id": user.id, "roles": [role]}, headers=auth
            )
            if not reachable or user.tenant != op.by:
                assert response.status == 404, await response.text()
            elif op.user in org.members:
                assert response.status == 409
            else:
                assert response.status == 201, await response.text()
                org.members[op.user] = role
        elif op.kind == "remove":
            response = await api.delete(f"{path}/members/{user.id}", headers=auth)
            owners = [u for u, r in org.members.items() if r == "owner"]
            if not reachable or op.user not in org.members:
                assert response.status == 404
            elif owners == [op.user]:
                assert response.status == 409
            else:
                assert response.status == 204, await response.text()
                del org.members[op.user]
        elif op.kind == "switch":
            response = await api.post(
                f"/auth/organizations/{org.id}/switch",
                token=user.access_token,
                headers={"X-Tenant": TENANTS[user.tenant]},
            )
            member = not org.deleted and op.user in org.members
            assert response.status == (200 if member else 404), await response.text()
        elif op.kind == "role":
            name = f"r{op.role}"
            response = await api.post("/admin/roles", {"name": name}, headers=auth)
            assert response.status == (409 if name in self.roles[op.by] else 201)
            self.roles[op.by].add(name)

    async def check(self) -> None:
        api = self.api
        for index in (0, 1):
            auth = self.auth(index)
            listed = await api.get("/admin/organizations?limit=200", headers=auth)
            ids = {o["id"] for o in (await listed.json())["items"]}
            mine = {o.id for o in self.orgs if o.tenant == index and not o.deleted}
            # Earlier examples' organizations stay in the shared app: ours are a subset.
            assert mine <= ids
            assert not ids & {o.id for o in self.orgs if o.tenant != index}
            roles = await api.get("/admin/roles", headers=auth)
            names = {r["name"] for r in (await roles.json())["items"]}
            assert self.roles[index] <= names
            assert not (self.roles[1 - index] - self.roles[index]) & names
        for org in self.orgs:
            if org.deleted:
                continue
            response = await api.get(
                f"/admin/organizations/{org.id}/members", headers=self.auth(org.tenant)
            )
            found = {m["user_id"]: m["roles"] for m in (await response.json())["items"]}
            assert found == {self.users[u].id: [r] for u, r in org.members.items()}
        for index, user in enumerate(self.users):
            response = await api.get(
                "/auth/organizations",
                token=user.access_token,
                headers={"X-Tenant": TENANTS[user.tenant]},
            )
            found_ids = {o["id"] for o in (await response.json())["items"]}
            expected = {o.id for o in self.orgs if not o.deleted and index in o.members}
            assert expected <= found_ids
            assert all(o.tenant == user.tenant for o in self.orgs if o.id in found_ids)


async def _user(api: Api, key: str, tenant: str, email: str) -> User:
    headers = {"Authorization": f"Bearer {key}", "X-Tenant": tenant}
    response = await api.post(
        "/admin/users", {"email": email, "password": PASSWORD, "verified": True}, headers=headers
    )
    assert response.status == 201, await response.text()
    user_id = (await response.json())["id"]
    tokens = await api.login(email, headers={"X-Tenant": tenant})
    return User(user_id, TENANTS.index(tenant), tokens["access_token"])


@pytest.fixture
async def world_parts(api: Api) -> tuple[tuple[str, str], list[User]]:
    await api.container.tenant_admin().create("acme")
    scopes = ("organizations:manage", "users:write")
    keys = (await api.api_key(*scopes), await api.api_key(*scopes, tenant="acme"))
    users = [
        await _user(api, keys[0], "default", "ann@example.com"),
        await _user(api, keys[0], "default", "bob@example.com"),
        await _user(api, keys[1], "acme", "ann@example.com"),
        await _user(api, keys[1], "acme", "bob@example.com"),
    ]
    return keys, users


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operations, min_size=6, max_size=16))
async def test_organizations_stay_in_their_tenant(
    api: Api, world_parts: tuple[tuple[str, str], list[User]], ops: list[Op]
) -> None:
    keys, users = world_parts
    world = World(api, keys, users, uuid.uuid4().hex[:8])
    # Roles are the tenant's and persist across examples: start from what exists.
    for index in (0, 1):
        response = await api.get("/admin/roles", headers=world.auth(index))
        existing = {r["name"] for r in (await response.json())["items"]}
        world.roles[index].update(existing - set(ROLES))
    for op in ops:
        await world.apply(op)
        await world.check()
