"""Organization use cases on the in-memory store: membership life cycle, permissions, the
last-owner rule (also under concurrency), invitations, token claims, erasure."""

import asyncio
import re
from uuid import uuid4

import pyotp
import pytest

from identity.application.admin import erase_account
from identity.application.introspection import Introspect, IntrospectToken
from identity.application.mail_templates import MailTemplates
from identity.application.organizations import (
    AdminOrganizations,
    InvitationDigester,
    OrganizationServices,
    SelfServiceOrganizations,
    organization_claims,
)
from identity.application.sessions import Authenticate, Principal, RefreshSession
from identity.application.tokens import NO_CLIENT, TokenPair
from identity.domain.emails import Email
from identity.domain.events import EventType
from identity.domain.organizations import (
    ADMIN,
    MEMBER,
    ORG_MANAGE,
    ORG_MEMBERS_MANAGE,
    OWNER,
    AlreadyMemberError,
    BuiltInRoleError,
    InsufficientPermissionError,
    InvalidOrganizationError,
    InvitationEmailMismatchError,
    InvitationInvalidError,
    LastOwnerError,
    OrganizationNotFoundError,
    UserOrganizationsDisabledError,
)
from tests.fakes import SECRET_KEY, SENDER, Services, make_services

ADA, BOB, EVE = "ada@example.com", "bob@example.com", "eve@example.com"


class Org:
    def __init__(self, app: Services) -> None:
        self.app = app
        services = OrganizationServices(
            uow=app.uow,
            clock=app.clock,
            tokens=app.sessions.tokens,
            templates=MailTemplates(SENDER),
            policy=app.policy,
            digester=InvitationDigester(SECRET_KEY),
            ui_base_url="https://id.example.test",
        )
        self.me = SelfServiceOrganizations(services)
        self.admin = AdminOrganizations(services)

    async def principal(self, pair: TokenPair) -> Principal:
        return await Authenticate(self.app.sessions)(pair.tenant, pair.access_token)

    def invitation_code(self, address: str) -> str:
        mail = self.app.mails_to(address)[-1]
        found = re.search(r"code=([A-Za-z0-9_-]+)", mail.text)
        assert found is not None
        return found.group(1)


@pytest.fixture
async def app() -> Services:
    return await make_services()


@pytest.fixture
def org(app: Services) -> Org:
    return Org(app)


async def events(app: Services) -> list[EventType]:
    async with app.uow() as uow:
        found = await uow.events.list(app.tenant.id, limit=100)
    return [event.type for event in reversed(found)]


async def test_the_creator_owns_the_organization_and_sees_it_with_roles(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    created = await org.me.create(ada, "Acme GmbH")
    assert created.organization.slug == "acme-gmbh"
    assert created.roles == {OWNER}
    assert {ORG_MANAGE, ORG_MEMBERS_MANAGE} <= created.permissions
    mine = await org.me.list_mine(ada)
    assert [m.organization.id for m in mine] == [created.organization.id]
    # The same name again gets a slug of its own; an explicit taken slug is refused.
    again = await org.me.create(ada, "Acme GmbH")
    assert again.organization.slug.startswith("acme-gmbh-")
    assert EventType.ORGANIZATION_CREATED in await events(app)


async def test_a_tenant_may_refuse_user_organizations(app: Services, org: Org) -> None:
    closed = await app.create_tenant("closed", allow_user_organizations="false")
    ada = await org.principal(await app.register_verified(ADA, tenant=closed))
    with pytest.raises(UserOrganizationsDisabledError):
        await org.me.create(ada, "Acme")


async def test_membership_life_cycle_with_permissions_and_the_last_owner(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    bob_pair = await app.register_verified(BOB)
    bob = await org.principal(bob_pair)
    acme = (await org.me.create(ada, "Acme")).organization

    # Not a member: the organization does not exist for bob.
    with pytest.raises(OrganizationNotFoundError):
        await org.me.members(bob, acme.id)
    with pytest.raises(OrganizationNotFoundError):
        await org.me.invite(bob, acme.id, Email(EVE), [MEMBER])

    invitation = await org.me.invite(ada, acme.id, Email(BOB), [MEMBER])
    assert [i.id for i in await org.me.invitations(ada, acme.id)] == [invitation.id]
    joined = await org.me.accept(bob, org.invitation_code(BOB))
    assert joined.roles == {MEMBER}
    assert await org.me.invitations(ada, acme.id) == []

    # A plain member reads the members but manages nothing.
    page = await org.me.members(bob, acme.id)
    assert {entry.email for entry in page.items} == {ADA, BOB}
    with pytest.raises(InsufficientPermissionError):
        await org.me.change_roles(bob, acme.id, ada.account.id, [MEMBER])
    with pytest.raises(InsufficientPermissionError):
        await org.me.invitations(bob, acme.id)

    # An admin manages members but cannot make an owner, nor touch one.
    await org.me.change_roles(ada, acme.id, bob.account.id, [ADMIN])
    with pytest.raises(InsufficientPermissionError):
        await org.me.change_roles(bob, acme.id, bob.account.id, [OWNER])
    with pytest.raises(InsufficientPermissionError):
        await org.me.remove(bob, acme.id, ada.account.id)

    # The last owner can neither leave nor step down.
    with pytest.raises(LastOwnerError):
        await org.me.remove(ada, acme.id, ada.account.id)
    with pytest.raises(LastOwnerError):
        await org.me.change_roles(ada, acme.id, ada.account.id, [ADMIN])
    await org.me.change_roles(ada, acme.id, bob.account.id, [OWNER])
    await org.me.remove(ada, acme.id, ada.account.id)  # leave: bob owns it now
    with pytest.raises(OrganizationNotFoundError):
        await org.me.members(ada, acme.id)

    with pytest.raises(InvalidOrganizationError, match="unknown roles"):
        await org.me.change_roles(bob, acme.id, bob.account.id, [OWNER, "nope"])
    # Events of one instant are not ordered among themselves: compare them as a bag.
    assert sorted(
        [
            EventType.MEMBER_ADDED,
            EventType.INVITATION_CREATED,
            EventType.MEMBER_ADDED,
            EventType.INVITATION_ACCEPTED,
            EventType.MEMBER_ROLES_CHANGED,
            EventType.MEMBER_ROLES_CHANGED,
            EventType.MEMBER_REMOVED,
        ]
    ) == sorted(e for e in await events(app) if e.value.startswith(("member.", "invitation.")))


async def test_two_owners_removing_each_other_at_once_leave_one_owner(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    bob = await org.principal(await app.register_verified(BOB))
    acme = (await org.me.create(ada, "Acme")).organization
    await org.admin.add_member(app.tenant, acme.id, bob.account.id, [OWNER])

    barrier = asyncio.Barrier(2)

    async def remove(actor: Principal, target: Principal) -> None:
        await barrier.wait()
        await org.me.remove(actor, acme.id, target.account.id)

    results = await asyncio.gather(remove(ada, bob), remove(bob, ada), return_exceptions=True)
    outcomes = sorted(type(r).__name__ for r in results)
    # One removal wins; the other finds the caller removed (404) or the last owner (409).
    assert outcomes[0] == "NoneType"
    assert outcomes[1] in ("OrganizationNotFoundError", "LastOwnerError")
    page = await org.admin.members(app.tenant, acme.id)
    assert [e.membership.roles for e in page.items] == [{OWNER}]


async def test_an_invitation_is_bound_to_the_address_and_spent_once(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    eve = await org.principal(await app.register_verified(EVE))
    bob = await org.principal(await app.register_verified(BOB))
    acme = (await org.me.create(ada, "Acme")).organization
    await org.me.invite(ada, acme.id, Email(BOB), [MEMBER, ADMIN])
    code = org.invitation_code(BOB)
    assert code not in repr(await org.me.invitations(ada, acme.id))
    with pytest.raises(InvitationEmailMismatchError):
        await org.me.accept(eve, code)
    with pytest.raises(InvitationInvalidError):
        await org.me.accept(bob, "not-a-code")
    assert (await org.me.accept(bob, code)).roles == {MEMBER, ADMIN}
    with pytest.raises(InvitationInvalidError):
        await org.me.accept(bob, code)
    with pytest.raises(AlreadyMemberError):
        await org.me.invite(ada, acme.id, Email(BOB), [MEMBER])
    # Another tenant's user with the invited address cannot use it either.
    other = await app.create_tenant("other")
    bob_elsewhere = await org.principal(await app.register_verified(BOB, tenant=other))
    await org.me.invite(ada, acme.id, Email("carol@example.com"), [MEMBER])
    with pytest.raises(InvitationInvalidError):
        await org.me.accept(bob_elsewhere, org.invitation_code("carol@example.com"))


async def test_an_invitation_expires_after_seven_days(app: Services, org: Org) -> None:
    from datetime import timedelta

    ada = await org.principal(await app.register_verified(ADA))
    bob = await org.principal(await app.register_verified(BOB))
    acme = (await org.me.create(ada, "Acme")).organization
    await org.me.invite(ada, acme.id, Email(BOB), [MEMBER])
    app.clock.advance(timedelta(days=7, seconds=1))
    with pytest.raises(InvitationInvalidError):
        await org.me.accept(bob, org.invitation_code(BOB))


async def test_switching_puts_the_claims_in_tokens_and_refresh_keeps_them_true(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    bob_pair = await app.register_verified(BOB)
    bob = await org.principal(bob_pair)
    acme = (await org.me.create(ada, "Acme")).organization
    await org.admin.create_role(app.tenant, "billing", "", ["invoices:read"])
    await org.admin.add_member(app.tenant, acme.id, bob.account.id, ["billing"])

    switched = await org.me.switch(bob, acme.id)
    assert switched.refresh_token == bob_pair.refresh_token  # the same session
    claims = app.codec.decode_access(switched.access_token).org
    assert claims is not None
    assert (claims.org_id, claims.org_slug, claims.org_roles) == (acme.id, "acme", ("billing",))
    assert claims.permissions == ("invoices:read",)

    refresh = RefreshSession(app.sessions)
    first = await refresh(app.tenant, switched.refresh_token)
    assert app.codec.decode_access(first.access_token).org == claims

    await org.admin.update_role(app.tenant, "billing", permissions=["invoices:write"])
    second = await refresh(app.tenant, first.refresh_token)
    changed = app.codec.decode_access(second.access_token).org
    assert changed is not None and changed.permissions == ("invoices:write",)

    # Introspection answers the truth at once; the next refresh carries it.
    await org.admin.remove_member(app.tenant, acme.id, bob.account.id)
    introspect = Introspect(Authenticate(app.sessions), app.uow)
    seen = await introspect(IntrospectToken(app.tenant, second.access_token))
    assert seen.claims is not None and seen.claims.org is None
    third = await refresh(app.tenant, second.refresh_token)
    assert app.codec.decode_access(third.access_token).org is None

    # Not a member: no switch; leaving the context drops the claims.
    with pytest.raises(OrganizationNotFoundError):
        await org.me.switch(bob, acme.id)
    ada_in = await org.me.switch(ada, acme.id)
    assert app.codec.decode_access(ada_in.access_token).org is not None
    ada_out = await org.me.switch(ada, None)
    assert app.codec.decode_access(ada_out.access_token).org is None


async def test_organization_claims_by_id_or_slug_for_the_openid_provider(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    acme = (await org.me.create(ada, "Acme")).organization
    async with app.uow() as uow:
        by_slug = await organization_claims(uow, app.tenant.id, ada.account.id, "acme")
        by_id = await organization_claims(uow, app.tenant.id, ada.account.id, str(acme.id))
        stranger = await organization_claims(uow, app.tenant.id, app.tenant.id, acme.id)
    assert by_slug == by_id and by_slug is not None and by_slug.org_roles == (OWNER,)
    assert stranger is None


async def test_roles_admin_built_ins_get_permissions_but_stay(app: Services, org: Org) -> None:
    roles = {role.name for role in await org.admin.roles(app.tenant)}
    assert roles == {OWNER, ADMIN, MEMBER}
    member = await org.admin.update_role(app.tenant, MEMBER, permissions=["reports:read"])
    assert member.effective_permissions == {"reports:read"}
    with pytest.raises(BuiltInRoleError):
        await org.admin.delete_role(app.tenant, OWNER)
    with pytest.raises(BuiltInRoleError):
        await org.admin.create_role(app.tenant, ADMIN)
    with pytest.raises(InvalidOrganizationError):
        await org.admin.create_role(app.tenant, "x", permissions=["no spaces"])


async def test_erasing_the_last_owner_hands_the_organization_to_its_admins_or_deletes_it(
    app: Services, org: Org
) -> None:
    ada = await org.principal(await app.register_verified(ADA))
    bob = await org.principal(await app.register_verified(BOB))
    acme = (await org.me.create(ada, "Acme")).organization
    solo = (await org.me.create(ada, "Solo")).organization
    await org.admin.add_member(app.tenant, acme.id, bob.account.id, [ADMIN])
    await org.admin.add_member(app.tenant, solo.id, bob.account.id, [MEMBER])

    async with app.uow() as uow:
        account = await uow.accounts.get(app.tenant.id, ada.account.id)
        assert account is not None
        assert await erase_account(uow, account, NO_CLIENT, app.clock.now(), by="self")
        await uow.commit()

    mine = {m.organization.slug: m.roles for m in await org.me.list_mine(bob)}
    assert mine == {"acme": {ADMIN, OWNER}}
    assert EventType.ORGANIZATION_DELETED in await events(app)


async def test_nothing_crosses_tenants(app: Services, org: Org) -> None:
    other = await app.create_tenant("other")
    ada = await org.principal(await app.register_verified(ADA))
    acme = (await org.me.create(ada, "Acme")).organization
    with pytest.raises(OrganizationNotFoundError):
        await org.admin.get(other, acme.id)
    with pytest.raises(OrganizationNotFoundError):
        await org.admin.add_member(other, acme.id, ada.account.id, [MEMBER])
    assert (await org.admin.list_page(other)).items == []
    with pytest.raises(OrganizationNotFoundError):
        await org.admin.members(other, acme.id)


async def test_the_admin_member_list_tells_an_empty_organization_from_none(
    app: Services, org: Org
) -> None:
    # The organization is read only for an empty page: members already prove it exists.
    empty = await org.admin.create(app.tenant, "Empty")
    assert (await org.admin.members(app.tenant, empty.id)).items == []
    ada = await org.principal(await app.register_verified(ADA))
    acme = (await org.me.create(ada, "Acme")).organization
    page = await org.admin.members(app.tenant, acme.id)
    assert [e.email for e in page.items] == [ADA]
    await org.admin.delete(app.tenant, acme.id)
    for gone in (acme.id, uuid4()):
        with pytest.raises(OrganizationNotFoundError):
            await org.admin.members(app.tenant, gone)


async def test_a_step_up_keeps_the_sessions_organization_claims(app: Services, org: Org) -> None:
    from identity.application.mfa import ConfirmTotp, EnrollTotp, SecondFactorProof, StepUp

    pair = await app.register_verified(ADA)
    ada = await org.principal(pair)
    acme = (await org.me.create(ada, "Acme")).organization
    enrollment = await EnrollTotp(app.mfa)(ada)
    codes = await ConfirmTotp(app.mfa)(ada, pyotp.TOTP(enrollment.secret).at(app.clock.now()))
    switched = await org.me.switch(ada, acme.id)
    principal = await org.principal(switched)
    stepped = await StepUp(app.mfa)(principal, SecondFactorProof(recovery_code=codes.codes[0]))
    claims = app.codec.decode_access(stepped.access_token)
    assert claims.aal == "aal2"
    assert claims.org is not None and claims.org.org_id == acme.id
