"""Organizations: the business customers of an application, inside its tenant.

People belong to organizations through memberships; a membership holds roles,
and roles (the tenant's) hold permissions. The rules live here and are tested
without a database: what a role may be called and hold, what a membership may
do, and that an organization always keeps an owner.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs

from identity.domain.errors import DomainError

ORG_MANAGE = "org:manage"
ORG_MEMBERS_MANAGE = "org:members:manage"

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"

# What the built-in roles hold whatever the tenant does; the tenant may add more.
BUILT_IN_PERMISSIONS: Mapping[str, frozenset[str]] = {
    OWNER: frozenset({ORG_MANAGE, ORG_MEMBERS_MANAGE}),
    ADMIN: frozenset({ORG_MANAGE, ORG_MEMBERS_MANAGE}),
    MEMBER: frozenset(),
}
BUILT_IN_DESCRIPTIONS: Mapping[str, str] = {
    OWNER: "Owns the organization; it always keeps at least one.",
    ADMIN: "Manages the organization and its members.",
    MEMBER: "Belongs to the organization.",
}

INVITATION_TTL = timedelta(days=7)

MAX_ORG_NAME = 200
MAX_ROLE_DESCRIPTION = 500
MAX_PERMISSIONS_PER_ROLE = 100
MAX_ROLES_PER_MEMBER = 20
MAX_METADATA_BYTES = 4096

# Permissions are free strings, but of a shape a token and a log can carry:
# printable, no spaces, at most 128 characters (`invoices:read`, `reports.export`).
_PERMISSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/*-]{0,127}$")
_ROLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_.:-]{0,62}$")
_ORG_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class OrganizationError(DomainError):
    """Base of the organization errors."""


class InvalidOrganizationError(OrganizationError):
    """A field of an organization, role or membership is not acceptable; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class OrganizationNotFoundError(OrganizationError):
    """No such organization in the tenant, or the caller is not one of its members."""


class MemberNotFoundError(OrganizationError):
    pass


class RoleNotFoundError(OrganizationError):
    pass


class InvitationNotFoundError(OrganizationError):
    pass


class InsufficientPermissionError(OrganizationError):
    """A member whose roles lack the permission the action needs."""


class LastOwnerError(OrganizationError):
    """The change would leave the organization without an owner."""


class OrganizationSlugTakenError(OrganizationError):
    pass


class RoleAlreadyExistsError(OrganizationError):
    pass


class BuiltInRoleError(OrganizationError):
    """The built-in roles can get permissions but cannot be deleted or renamed."""


class AlreadyMemberError(OrganizationError):
    pass


class UserOrganizationsDisabledError(OrganizationError):
    """The tenant does not let its users create organizations."""


class InvitationInvalidError(OrganizationError):
    """Unknown, expired, used or revoked invitation code: one error for all."""


class InvitationEmailMismatchError(OrganizationError):
    """The signed-in address is not the invited one."""


# --- values ------------------------------------------------------------------------


def validate_permission(permission: str) -> str:
    if not isinstance(permission, str) or not _PERMISSION.match(permission):
        raise InvalidOrganizationError(
            "permissions",
            "a permission is 1-128 characters: letters, digits and _ . : / * -, "
            "starting with a letter or digit",
        )
    return permission


def validate_permissions(permissions: Iterable[str]) -> frozenset[str]:
    found = frozenset(validate_permission(p) for p in permissions)
    if len(found) > MAX_PERMISSIONS_PER_ROLE:
        raise InvalidOrganizationError(
            "permissions", f"a role holds at most {MAX_PERMISSIONS_PER_ROLE} permissions"
        )
    return found


def validate_role_name(name: str) -> str:
    if not isinstance(name, str) or not _ROLE_NAME.match(name):
        raise InvalidOrganizationError(
            "name", "a role name is 1-63 lower-case letters, digits and _ . : -"
        )
    return name


def validate_org_slug(slug: str) -> str:
    if not isinstance(slug, str) or not _ORG_SLUG.match(slug):
        raise InvalidOrganizationError(
            "slug", "a slug is 1-63 lower-case letters, digits and dashes"
        )
    return slug


def validate_org_name(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned or len(cleaned) > MAX_ORG_NAME:
        raise InvalidOrganizationError("name", f"a name is 1-{MAX_ORG_NAME} characters")
    return cleaned


def slug_from_name(name: str) -> str:
    """A slug made of the name (``Acme GmbH`` -> ``acme-gmbh``); ``org`` when nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")
    return slug or "org"


def is_built_in(role_name: str) -> bool:
    return role_name in BUILT_IN_PERMISSIONS


# --- entities ----------------------------------------------------------------------


@attrs.define
class Organization:
    id: UUID
    tenant_id: UUID
    slug: str
    name: str
    created_at: datetime
    metadata: dict[str, Any] = attrs.field(factory=dict)


@attrs.define
class Role:
    """A role of the tenant. A built-in one exists even before the tenant stores it."""

    tenant_id: UUID
    name: str
    description: str = ""
    permissions: frozenset[str] = frozenset()
    created_at: datetime | None = None

    @property
    def built_in(self) -> bool:
        return is_built_in(self.name)

    @property
    def effective_permissions(self) -> frozenset[str]:
        """What the role holds: the tenant's grants and, for a built-in, its own."""
        return self.permissions | BUILT_IN_PERMISSIONS.get(self.name, frozenset())

    @classmethod
    def built_in_default(cls, tenant_id: UUID, name: str) -> Role:
        return cls(tenant_id, name, BUILT_IN_DESCRIPTIONS[name])


def effective_roles(tenant_id: UUID, stored: Iterable[Role]) -> dict[str, Role]:
    """The tenant's roles by name: the stored ones and the built-ins it never stored."""
    roles = {role.name: role for role in stored}
    for name in BUILT_IN_PERMISSIONS:
        roles.setdefault(name, Role.built_in_default(tenant_id, name))
    return roles


def permissions_of(role_names: Iterable[str], roles: Mapping[str, Role]) -> frozenset[str]:
    """The union of the named roles' permissions (a role the tenant lost gives nothing)."""
    granted: set[str] = set()
    for name in role_names:
        role = roles.get(name)
        if role is not None:
            granted |= role.effective_permissions
        else:
            granted |= BUILT_IN_PERMISSIONS.get(name, frozenset())
    return frozenset(granted)


def check_roles(requested: Iterable[str], known: Iterable[str]) -> frozenset[str]:
    """The requested role names, each a role of the tenant; at least one."""
    names = frozenset(requested)
    if not names:
        raise InvalidOrganizationError("roles", "give at least one role")
    if len(names) > MAX_ROLES_PER_MEMBER:
        raise InvalidOrganizationError("roles", f"at most {MAX_ROLES_PER_MEMBER} roles")
    unknown = sorted(names - frozenset(known))
    if unknown:
        raise InvalidOrganizationError("roles", f"unknown roles: {', '.join(unknown)}")
    return names


@attrs.define
class Membership:
    id: UUID
    tenant_id: UUID
    organization_id: UUID
    user_id: UUID
    roles: frozenset[str]
    created_at: datetime

    @property
    def is_owner(self) -> bool:
        return OWNER in self.roles

    def permissions(self, roles: Mapping[str, Role]) -> frozenset[str]:
        return permissions_of(self.roles, roles)

    def require(self, permission: str, roles: Mapping[str, Role]) -> None:
        """Raise ``InsufficientPermissionError`` unless the member holds ``permission``."""
        if permission not in self.permissions(roles):
            raise InsufficientPermissionError(permission)


def check_owner_remains(target: Membership, new_roles: frozenset[str] | None, owners: int) -> None:
    """The last-owner rule: an organization always keeps an owner.

    ``owners`` is the organization's owner count now (read under the
    organization's lock); ``new_roles`` None means the member leaves.
    """
    if not target.is_owner:
        return
    stays_owner = new_roles is not None and OWNER in new_roles
    if not stays_owner and owners <= 1:
        raise LastOwnerError("the organization would have no owner")


def check_may_assign(
    actor: Membership, before: frozenset[str] | None, after: frozenset[str] | None
) -> None:
    """Only an owner gives or takes the ``owner`` role (or removes an owner).

    ``before``/``after`` are the target's roles (None: not a member). An admin
    holds ``org:members:manage`` but cannot make anyone, itself included, an
    owner, nor demote or remove one.
    """
    touches_owner = OWNER in (before or frozenset()) or OWNER in (after or frozenset())
    if touches_owner and not actor.is_owner:
        raise InsufficientPermissionError("only an owner gives or takes the owner role")


@attrs.define
class Invitation:
    """An invitation by email: a one-time code bound to the address and the tenant.

    Only the keyed digest of the code is kept; it is spent once, within
    ``INVITATION_TTL``.
    """

    id: UUID
    tenant_id: UUID
    organization_id: UUID
    email: str
    email_key: str
    roles: frozenset[str]
    code_digest: str = attrs.field(repr=False)
    created_at: datetime
    expires_at: datetime
    invited_by: UUID | None = None
    accepted_at: datetime | None = None

    def is_pending(self, now: datetime) -> bool:
        return self.accepted_at is None and now < self.expires_at

    def accept(self, code_digest: str, email_key: str, now: datetime) -> None:
        """Spend the invitation for the signed-in address ``email_key``."""
        if not self.is_pending(now) or not hmac.compare_digest(self.code_digest, code_digest):
            raise InvitationInvalidError("the invitation is invalid or expired")
        if email_key != self.email_key:
            raise InvitationEmailMismatchError("the invitation is for another address")
        self.accepted_at = now


@attrs.frozen
class OrgClaims:
    """What an access token says of the session's organization."""

    org_id: UUID
    org_slug: str
    org_roles: tuple[str, ...]
    permissions: tuple[str, ...]

    @classmethod
    def of(
        cls, organization_id: UUID, slug: str, roles: Iterable[str], permissions: Iterable[str]
    ) -> OrgClaims:
        return cls(organization_id, slug, tuple(sorted(roles)), tuple(sorted(permissions)))
