"""The organization repositories' contract, on the in-memory store, SQLite and PostgreSQL.

The storage fixtures are those of ``test_repository_contract``, imported by name.
"""

# ruff: noqa: F811

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from identity.application.ports import Position, UnitOfWork
from identity.domain.accounts import Account
from identity.domain.organizations import (
    ADMIN,
    MEMBER,
    ORG_MANAGE,
    ORG_MEMBERS_MANAGE,
    OWNER,
    AlreadyMemberError,
    Invitation,
    Membership,
    Organization,
    OrganizationSlugTakenError,
    OrgClaims,
    Role,
    RoleAlreadyExistsError,
)
from identity.domain.tenants import Tenant
from tests.integration.test_repository_contract import (  # noqa: F401 (fixtures)
    NOW,
    RACERS,
    Storage,
    add_account,
    add_sessions,
    contract_postgres_url,
    new_session,
    other_tenant,
    race,
    read,
    storage,
    storage_url,
    tenant,
    unexpected,
    write,
)


def new_org(tenant: Tenant, slug: str = "acme", **fields: object) -> Organization:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "tenant_id": tenant.id,
        "slug": slug,
        "name": slug.title(),
        "created_at": NOW,
        "metadata": {"plan": "gold"},
    }
    values.update(fields)
    return Organization(**values)  # type: ignore[arg-type]


def new_membership(org: Organization, account: Account, *roles: str, at: int = 0) -> Membership:
    return Membership(
        uuid.uuid4(),
        org.tenant_id,
        org.id,
        account.id,
        frozenset(roles),
        NOW + timedelta(seconds=at),
    )


async def add_org(storage: Storage, tenant: Tenant, slug: str = "acme") -> Organization:
    org = new_org(tenant, slug)
    await write(storage, lambda uow: uow.organizations.add(org))
    return org


async def test_an_organization_round_trips_and_stays_in_its_tenant(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    assert await read(storage, lambda uow: uow.organizations.get(tenant.id, org.id)) == org
    assert await read(storage, lambda uow: uow.organizations.get_by_slug(tenant.id, "acme")) == org
    assert await read(storage, lambda uow: uow.organizations.get(other_tenant.id, org.id)) is None
    assert await read(storage, lambda uow: uow.organizations.lock(other_tenant.id, org.id)) is None
    assert not await write(storage, lambda uow: uow.organizations.delete(other_tenant.id, org.id))
    # The same slug in another tenant is another organization.
    await add_org(storage, other_tenant)


async def test_a_taken_slug_is_refused_and_the_transaction_goes_on(
    storage: Storage, tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    other = new_org(tenant, "globex")

    async def clash(uow: UnitOfWork) -> None:
        with pytest.raises(OrganizationSlugTakenError):
            await uow.organizations.add(new_org(tenant, "acme"))
        await uow.organizations.add(other)
        other.slug = "acme"
        with pytest.raises(OrganizationSlugTakenError):
            await uow.organizations.update(other)

    await write(storage, clash)
    stored = await read(storage, lambda uow: uow.organizations.get(tenant.id, other.id))
    assert stored is not None and stored.slug == "globex"
    org.name, org.metadata = "Acme Corp", {"plan": "platinum"}
    await write(storage, lambda uow: uow.organizations.update(org))
    assert await read(storage, lambda uow: uow.organizations.get(tenant.id, org.id)) == org


async def test_organizations_page_by_creation(storage: Storage, tenant: Tenant) -> None:
    orgs = [new_org(tenant, f"org-{i}", created_at=NOW + timedelta(seconds=i)) for i in range(5)]

    async def add_all(uow: UnitOfWork) -> None:
        for org in reversed(orgs):
            await uow.organizations.add(org)

    await write(storage, add_all)
    first = await read(storage, lambda uow: uow.organizations.list_page(tenant.id, None, 3))
    assert [o.slug for o in first] == ["org-0", "org-1", "org-2"]
    after = Position(first[-1].created_at, first[-1].id)
    rest = await read(storage, lambda uow: uow.organizations.list_page(tenant.id, after, 3))
    assert [o.slug for o in rest] == ["org-3", "org-4"]


async def test_roles_are_stored_per_tenant_and_deleting_one_takes_it_from_members(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    billing = Role(tenant.id, "billing", "pays", frozenset({"invoices:read"}), NOW)
    await write(storage, lambda uow: uow.roles.add(billing))
    with pytest.raises(RoleAlreadyExistsError):
        await write(storage, lambda uow: uow.roles.add(billing))
    assert await read(storage, lambda uow: uow.roles.get(tenant.id, "billing")) == billing
    assert await read(storage, lambda uow: uow.roles.get(other_tenant.id, "billing")) is None
    admin = Role(tenant.id, ADMIN, "admins", frozenset({"reports:read"}), NOW)
    await write(storage, lambda uow: uow.roles.save(admin))
    admin.permissions = frozenset({"reports:write"})
    await write(storage, lambda uow: uow.roles.save(admin))
    assert [r.name for r in await read(storage, lambda uow: uow.roles.list(tenant.id))] == [
        ADMIN,
        "billing",
    ]
    assert await read(storage, lambda uow: uow.roles.get(tenant.id, ADMIN)) == admin

    org = await add_org(storage, tenant)
    account = await add_account(storage, tenant)
    await write(
        storage, lambda uow: uow.memberships.add(new_membership(org, account, MEMBER, "billing"))
    )
    assert await write(storage, lambda uow: uow.roles.delete(tenant.id, "billing"))
    membership = await read(storage, lambda uow: uow.memberships.get(tenant.id, org.id, account.id))
    assert membership is not None and membership.roles == {MEMBER}
    assert not await write(storage, lambda uow: uow.roles.delete(tenant.id, "billing"))


async def test_memberships_round_trip_count_owners_and_list_for_the_user(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    acme, globex = await add_org(storage, tenant), await add_org(storage, tenant, "globex")
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    owner = new_membership(acme, alice, OWNER, ADMIN)
    await write(storage, lambda uow: uow.memberships.add(owner))
    await write(storage, lambda uow: uow.memberships.add(new_membership(acme, bob, OWNER, at=1)))
    later = new_membership(globex, alice, MEMBER, at=2)
    await write(storage, lambda uow: uow.memberships.add(later))
    with pytest.raises(AlreadyMemberError):
        await write(storage, lambda uow: uow.memberships.add(new_membership(acme, alice, MEMBER)))

    assert await read(storage, lambda uow: uow.memberships.get(tenant.id, acme.id, alice.id)) == (
        owner
    )
    assert (
        await read(storage, lambda uow: uow.memberships.get(other_tenant.id, acme.id, alice.id))
        is None
    )
    assert (
        await read(storage, lambda uow: uow.memberships.count_with_role(tenant.id, acme.id, OWNER))
        == 2
    )
    owner.roles = frozenset({ADMIN})
    await write(storage, lambda uow: uow.memberships.set_roles(owner))
    assert (
        await read(storage, lambda uow: uow.memberships.count_with_role(tenant.id, acme.id, OWNER))
        == 1
    )
    owners = await read(
        storage, lambda uow: uow.memberships.list_with_role(tenant.id, acme.id, OWNER)
    )
    assert [m.user_id for m in owners] == [bob.id]

    mine = await read(storage, lambda uow: uow.memberships.list_for_user(tenant.id, alice.id))
    assert [(m.organization.slug, m.membership.roles) for m in mine] == [
        ("acme", {ADMIN}),
        ("globex", {MEMBER}),
    ]
    assert (
        await read(storage, lambda uow: uow.memberships.list_for_user(other_tenant.id, alice.id))
        == []
    )

    assert await write(storage, lambda uow: uow.memberships.delete(tenant.id, acme.id, alice.id))
    assert not await write(
        storage, lambda uow: uow.memberships.delete(tenant.id, acme.id, alice.id)
    )


async def test_the_member_list_pages_by_keyset_with_addresses(
    storage: Storage, tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    accounts = [await add_account(storage, tenant, f"m{i}@example.test") for i in range(5)]

    # Two roles, then none: a page counts members, whatever their number of roles.
    roles = [(MEMBER,), (ADMIN, MEMBER), (), (MEMBER,), (OWNER,)]

    async def join(uow: UnitOfWork) -> None:
        for i, account in enumerate(accounts):
            await uow.memberships.add(new_membership(org, account, *roles[i], at=i))

    await write(storage, join)
    first = await read(storage, lambda uow: uow.memberships.list_page(tenant.id, org.id, None, 2))
    assert [e.email for e in first] == ["m0@example.test", "m1@example.test"]
    assert [e.membership.roles for e in first] == [{MEMBER}, {ADMIN, MEMBER}]
    seen = [e.email for e in first]
    found_roles = [e.membership.roles for e in first]
    after: Position | None = Position(first[-1].membership.created_at, first[-1].membership.id)
    while after is not None:
        page = await read(
            storage,
            lambda uow, position=after: uow.memberships.list_page(tenant.id, org.id, position, 2),
        )
        assert len(page) <= 2
        seen += [e.email for e in page]
        found_roles += [e.membership.roles for e in page]
        after = Position(page[-1].membership.created_at, page[-1].membership.id) if page else None
    assert seen == [f"m{i}@example.test" for i in range(5)]
    assert found_roles == [set(r) for r in roles]


async def test_deleting_an_organization_takes_its_memberships_and_invitations(
    storage: Storage, tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    account = await add_account(storage, tenant)
    await write(storage, lambda uow: uow.memberships.add(new_membership(org, account, OWNER)))
    invitation = new_invitation(org)
    await write(storage, lambda uow: uow.invitations.add(invitation))
    assert await write(storage, lambda uow: uow.organizations.delete(tenant.id, org.id))
    assert (
        await read(storage, lambda uow: uow.memberships.list_for_user(tenant.id, account.id)) == []
    )
    assert await read(storage, lambda uow: uow.invitations.get(tenant.id, invitation.id)) is None


def new_invitation(org: Organization, digest: str = "a" * 64) -> Invitation:
    return Invitation(
        id=uuid.uuid4(),
        tenant_id=org.tenant_id,
        organization_id=org.id,
        email="Bob@example.test",
        email_key="bob@example.test",
        roles=frozenset({MEMBER, ADMIN}),
        code_digest=digest,
        created_at=NOW,
        expires_at=NOW + timedelta(days=7),
    )


async def test_an_invitation_is_found_by_digest_in_its_tenant_and_accepted_once(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    invitation = new_invitation(org)
    await write(storage, lambda uow: uow.invitations.add(invitation))
    assert await read(storage, lambda uow: uow.invitations.get_by_digest(tenant.id, "a" * 64)) == (
        invitation
    )
    assert (
        await read(storage, lambda uow: uow.invitations.get_by_digest(other_tenant.id, "a" * 64))
        is None
    )
    pending = await read(storage, lambda uow: uow.invitations.list_pending(tenant.id, org.id, NOW))
    assert pending == [invitation]
    invitation.accepted_at = NOW

    async def accept() -> bool:
        return await write(storage, lambda uow: uow.invitations.record_acceptance(invitation))

    results = await race(RACERS, accept)
    assert not unexpected(results)
    assert results.count(True) == 1
    assert (
        await read(storage, lambda uow: uow.invitations.list_pending(tenant.id, org.id, NOW)) == []
    )
    assert not await write(
        storage, lambda uow: uow.invitations.delete(other_tenant.id, invitation.id)
    )
    assert await write(storage, lambda uow: uow.invitations.delete(tenant.id, invitation.id))


async def test_session_claims_follow_the_membership_and_the_roles(
    storage: Storage, tenant: Tenant, other_tenant: Tenant
) -> None:
    org = await add_org(storage, tenant)
    account = await add_account(storage, tenant)
    session = new_session(tenant, account)
    await add_sessions(storage, session)
    await write(
        storage,
        lambda uow: uow.roles.add(
            Role(tenant.id, "billing", "", frozenset({"invoices:read"}), NOW)
        ),
    )
    membership = new_membership(org, account, ADMIN, "billing")
    await write(storage, lambda uow: uow.memberships.add(membership))

    async def claims(tenant_id: uuid.UUID = tenant.id) -> OrgClaims | None:
        held = await read(
            storage, lambda uow: uow.session_organizations.claims(tenant_id, session.id, account.id)
        )
        # Refresh's hot read (one statement outside any transaction) answers the same.
        hot = await storage.session_reader.session_with_account(tenant_id, session.id, account.id)
        if tenant_id == tenant.id:
            assert hot is not None and (hot[0].id, hot[1].id) == (session.id, account.id)
            assert hot[2] == held
        else:
            assert hot is None
        return held

    assert await claims() is None
    await write(
        storage,
        lambda uow: uow.session_organizations.set(tenant.id, session.id, account.id, org.id),
    )
    found = await claims()
    assert found is not None
    assert (found.org_id, found.org_slug, found.org_roles) == (org.id, "acme", (ADMIN, "billing"))
    assert found.permissions == tuple(sorted({ORG_MANAGE, ORG_MEMBERS_MANAGE, "invoices:read"}))
    assert await claims(other_tenant.id) is None
    assert (
        await read(
            storage,
            lambda uow: uow.session_organizations.member_claims(tenant.id, org.id, account.id),
        )
        == found
    )

    membership.roles = frozenset({MEMBER})
    await write(storage, lambda uow: uow.memberships.set_roles(membership))
    changed = await claims()
    assert changed is not None and (changed.org_roles, changed.permissions) == ((MEMBER,), ())

    await write(storage, lambda uow: uow.memberships.delete(tenant.id, org.id, account.id))
    assert await claims() is None
    await write(storage, lambda uow: uow.memberships.add(new_membership(org, account, MEMBER)))
    assert await claims() is None  # a removal ends the session's context for good

    await write(
        storage,
        lambda uow: uow.session_organizations.set(tenant.id, session.id, account.id, None),
    )
    assert await claims() is None


async def test_a_locked_organization_serialises_owner_checks(
    storage: Storage, tenant: Tenant
) -> None:
    """Two owners removing each other at once: the lock makes the second see the first."""
    org = await add_org(storage, tenant)
    alice = await add_account(storage, tenant)
    bob = await add_account(storage, tenant, "bob@example.test")
    await write(storage, lambda uow: uow.memberships.add(new_membership(org, alice, OWNER)))
    await write(storage, lambda uow: uow.memberships.add(new_membership(org, bob, OWNER)))

    def remover(target: Account):  # type: ignore[no-untyped-def]
        async def remove() -> bool:
            async with storage.uow() as uow:
                assert await uow.organizations.lock(tenant.id, org.id) is not None
                if await uow.memberships.count_with_role(tenant.id, org.id, OWNER) <= 1:
                    return False
                await uow.memberships.delete(tenant.id, org.id, target.id)
                await uow.commit()
                return True

        return remove

    import asyncio

    barrier = asyncio.Barrier(2)

    async def run(target: Account) -> bool:
        await barrier.wait()
        return await remover(target)()

    results = await asyncio.gather(run(alice), run(bob), return_exceptions=True)
    assert not unexpected(list(results))
    assert sorted(results) == [False, True]  # type: ignore[type-var]
    assert (
        await read(storage, lambda uow: uow.memberships.count_with_role(tenant.id, org.id, OWNER))
        == 1
    )


async def test_expired_invitations_are_purged(storage: Storage, tenant: Tenant) -> None:
    org = await add_org(storage, tenant)
    live, old = new_invitation(org, "a" * 64), new_invitation(org, "b" * 64)
    old.expires_at = NOW - timedelta(seconds=1)
    await write(storage, lambda uow: uow.invitations.add(live))
    await write(storage, lambda uow: uow.invitations.add(old))
    assert await write(storage, lambda uow: uow.invitations.delete_expired(NOW)) == 1
    assert await read(storage, lambda uow: uow.invitations.get(tenant.id, old.id)) is None
    assert await read(storage, lambda uow: uow.invitations.get(tenant.id, live.id)) == live
