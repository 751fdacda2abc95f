import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.organizations import (
    ADMIN,
    INVITATION_TTL,
    MEMBER,
    ORG_MANAGE,
    ORG_MEMBERS_MANAGE,
    OWNER,
    InsufficientPermissionError,
    InvalidOrganizationError,
    Invitation,
    InvitationEmailMismatchError,
    InvitationInvalidError,
    LastOwnerError,
    Membership,
    OrgClaims,
    Role,
    check_may_assign,
    check_owner_remains,
    check_roles,
    effective_roles,
    slug_from_name,
    validate_org_name,
    validate_org_slug,
    validate_permissions,
    validate_role_name,
)

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TENANT = uuid.uuid4()
ORG = uuid.uuid4()


def _member(*roles: str) -> Membership:
    return Membership(uuid.uuid4(), TENANT, ORG, uuid.uuid4(), frozenset(roles), T0)


def test_the_built_in_roles_are_always_there_and_owner_and_admin_manage() -> None:
    roles = effective_roles(TENANT, [])
    assert set(roles) == {OWNER, ADMIN, MEMBER}
    for name in (OWNER, ADMIN):
        assert {ORG_MANAGE, ORG_MEMBERS_MANAGE} <= roles[name].effective_permissions
    assert roles[MEMBER].effective_permissions == frozenset()


def test_a_built_in_role_keeps_its_own_permissions_beside_the_tenants_grants() -> None:
    stored = Role(TENANT, ADMIN, "admins", frozenset({"invoices:read"}))
    roles = effective_roles(TENANT, [stored])
    assert roles[ADMIN].effective_permissions == {"invoices:read", ORG_MANAGE, ORG_MEMBERS_MANAGE}


def test_permissions_are_the_union_of_the_members_roles() -> None:
    billing = Role(TENANT, "billing", permissions=frozenset({"invoices:read", "invoices:write"}))
    viewer = Role(TENANT, "viewer", permissions=frozenset({"invoices:read", "reports:read"}))
    roles = effective_roles(TENANT, [billing, viewer])
    member = _member("billing", "viewer")
    assert member.permissions(roles) == {"invoices:read", "invoices:write", "reports:read"}
    member.require("reports:read", roles)
    with pytest.raises(InsufficientPermissionError):
        member.require(ORG_MEMBERS_MANAGE, roles)


def test_a_role_the_tenant_deleted_gives_nothing() -> None:
    assert _member("gone").permissions(effective_roles(TENANT, [])) == frozenset()


@pytest.mark.parametrize(
    "bad", ["", " invoices:read", "invoices read", "x" * 129, "ünïcode", "-lead", "a\nb"]
)
def test_permissions_of_the_wrong_shape_are_refused(bad: str) -> None:
    with pytest.raises(InvalidOrganizationError) as caught:
        validate_permissions([bad])
    assert caught.value.field == "permissions"


def test_permissions_of_the_right_shape_pass() -> None:
    assert validate_permissions(["invoices:read", "reports.export", "admin/*"]) == {
        "invoices:read",
        "reports.export",
        "admin/*",
    }


def test_too_many_permissions_are_refused() -> None:
    with pytest.raises(InvalidOrganizationError):
        validate_permissions([f"p{i}" for i in range(101)])


@pytest.mark.parametrize("bad", ["", "Admin", "a b", "x" * 64])
def test_role_names_are_bounded(bad: str) -> None:
    with pytest.raises(InvalidOrganizationError):
        validate_role_name(bad)


def test_names_and_slugs() -> None:
    assert validate_org_name("  Acme  ") == "Acme"
    with pytest.raises(InvalidOrganizationError):
        validate_org_name("x" * 201)
    with pytest.raises(InvalidOrganizationError):
        validate_org_name("   ")
    assert slug_from_name("Acme GmbH & Co. KG") == "acme-gmbh-co-kg"
    assert slug_from_name("Ünïcode Straße") == "unicode-strae"
    assert slug_from_name("!!!") == "org"
    assert validate_org_slug(slug_from_name("x" * 300)) == "x" * 63
    with pytest.raises(InvalidOrganizationError):
        validate_org_slug("-acme")


def test_unknown_roles_are_named() -> None:
    with pytest.raises(InvalidOrganizationError, match="unknown roles: nope"):
        check_roles(["member", "nope"], effective_roles(TENANT, []))
    with pytest.raises(InvalidOrganizationError):
        check_roles([], effective_roles(TENANT, []))
    assert check_roles(["member"], effective_roles(TENANT, [])) == {"member"}


def test_the_last_owner_can_neither_leave_nor_lose_the_role() -> None:
    owner = _member(OWNER)
    with pytest.raises(LastOwnerError):
        check_owner_remains(owner, None, owners=1)
    with pytest.raises(LastOwnerError):
        check_owner_remains(owner, frozenset({ADMIN}), owners=1)
    check_owner_remains(owner, frozenset({OWNER, ADMIN}), owners=1)
    check_owner_remains(owner, None, owners=2)
    check_owner_remains(_member(ADMIN), None, owners=1)


def test_only_an_owner_gives_or_takes_the_owner_role() -> None:
    admin, owner = _member(ADMIN), _member(OWNER)
    with pytest.raises(InsufficientPermissionError):
        check_may_assign(admin, frozenset({ADMIN}), frozenset({OWNER}))
    with pytest.raises(InsufficientPermissionError):
        check_may_assign(admin, frozenset({OWNER}), None)
    check_may_assign(admin, frozenset({MEMBER}), frozenset({ADMIN}))
    check_may_assign(admin, None, frozenset({MEMBER}))
    check_may_assign(owner, frozenset({ADMIN}), frozenset({OWNER}))


def _invitation() -> Invitation:
    return Invitation(
        id=uuid.uuid4(),
        tenant_id=TENANT,
        organization_id=ORG,
        email="Bob@example.com",
        email_key="bob@example.com",
        roles=frozenset({MEMBER}),
        code_digest="d" * 64,
        created_at=T0,
        expires_at=T0 + INVITATION_TTL,
    )


def test_an_invitation_is_spent_once_by_the_invited_address_within_seven_days() -> None:
    invitation = _invitation()
    assert INVITATION_TTL == timedelta(days=7)
    with pytest.raises(InvitationEmailMismatchError):
        invitation.accept("d" * 64, "eve@example.com", T0)
    with pytest.raises(InvitationInvalidError):
        invitation.accept("e" * 64, "bob@example.com", T0)
    invitation.accept("d" * 64, "bob@example.com", T0 + timedelta(days=6))
    with pytest.raises(InvitationInvalidError):
        invitation.accept("d" * 64, "bob@example.com", T0 + timedelta(days=6))


def test_an_expired_invitation_is_refused() -> None:
    with pytest.raises(InvitationInvalidError):
        _invitation().accept("d" * 64, "bob@example.com", T0 + INVITATION_TTL)


def test_claims_are_sorted() -> None:
    claims = OrgClaims.of(ORG, "acme", ["owner", "admin"], ["b", "a"])
    assert claims.org_roles == ("admin", "owner")
    assert claims.permissions == ("a", "b")
