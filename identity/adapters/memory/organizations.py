"""In-memory repositories of organizations, roles, memberships, invitations and the
organization each session acts in (section 19)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import attrs

from identity.adapters.memory.store import _round_trip, _Table, _Transaction
from identity.application.ports import (
    InvitationRepository,
    MemberEntry,
    MembershipOf,
    MembershipRepository,
    OrganizationRepository,
    Position,
    RoleRepository,
    SessionOrganizationRepository,
    UnitOfWork,
)
from identity.domain.accounts import Account
from identity.domain.organizations import (
    AlreadyMemberError,
    Invitation,
    Membership,
    Organization,
    OrganizationSlugTakenError,
    OrgClaims,
    Role,
    RoleAlreadyExistsError,
    effective_roles,
    permissions_of,
)

_MemberKey = tuple[UUID, UUID]  # (organization_id, user_id)
_RoleKey = tuple[UUID, str]  # (tenant_id, name)


@attrs.define
class _SessionOrganization:
    tenant_id: UUID
    user_id: UUID
    organization_id: UUID


def _organizations(transaction: _Transaction) -> _Table[UUID, Organization]:
    return _Table(transaction, "organizations", Organization)


def _memberships(transaction: _Transaction) -> _Table[_MemberKey, Membership]:
    return _Table(transaction, "memberships", Membership)


def _roles(transaction: _Transaction) -> _Table[_RoleKey, Role]:
    return _Table(transaction, "org_roles", Role)


def _invitations(transaction: _Transaction) -> _Table[UUID, Invitation]:
    return _Table(transaction, "invitations", Invitation)


def _session_organizations(transaction: _Transaction) -> _Table[UUID, _SessionOrganization]:
    return _Table(transaction, "session_organizations", _SessionOrganization)


class MemoryOrganizationRepository(OrganizationRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction
        self._t = _organizations(transaction)

    async def _claim_slug(self, organization: Organization) -> None:
        # As the unique index: a racing insert of the same slug waits, then fails.
        await self._t.lock((organization.tenant_id, organization.slug), "organization_slugs")
        for _, other in self._t.rows():
            if (
                other.tenant_id == organization.tenant_id
                and other.slug == organization.slug
                and other.id != organization.id
            ):
                raise OrganizationSlugTakenError(organization.slug)

    @_round_trip
    async def add(self, organization: Organization) -> None:
        await self._claim_slug(organization)
        await self._t.lock(organization.id)
        self._t.put(organization.id, organization)

    @_round_trip
    async def get(self, tenant_id: UUID, organization_id: UUID) -> Organization | None:
        found = self._t.get(organization_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    @_round_trip
    async def get_by_slug(self, tenant_id: UUID, slug: str) -> Organization | None:
        return next(
            (o for _, o in self._t.rows() if o.tenant_id == tenant_id and o.slug == slug), None
        )

    @_round_trip
    async def lock(self, tenant_id: UUID, organization_id: UUID) -> Organization | None:
        found = self._t.get(organization_id)
        if found is None or found.tenant_id != tenant_id:
            return None
        await self._t.lock(organization_id)
        found = self._t.get(organization_id)  # as read after the wait
        return found if found is not None and found.tenant_id == tenant_id else None

    @_round_trip
    async def update(self, organization: Organization) -> None:
        await self._claim_slug(organization)
        await self._t.lock(organization.id)
        if self._t.get(organization.id) is not None:
            self._t.put(organization.id, organization)

    @_round_trip
    async def delete(self, tenant_id: UUID, organization_id: UUID) -> bool:
        found = self._t.get(organization_id)
        if found is None or found.tenant_id != tenant_id:
            return False
        await self._t.lock(organization_id)
        if self._t.get(organization_id) is None:
            return False
        self._t.delete(organization_id)
        await _memberships(self._tx).delete_where(lambda m: m.organization_id == organization_id)
        await _invitations(self._tx).delete_where(lambda i: i.organization_id == organization_id)
        await _session_organizations(self._tx).delete_where(
            lambda s: s.organization_id == organization_id
        )
        return True

    @_round_trip
    async def list_page(
        self, tenant_id: UUID, after: Position | None, limit: int
    ) -> list[Organization]:
        found = [
            o
            for _, o in self._t.rows()
            if o.tenant_id == tenant_id
            and (after is None or (o.created_at, o.id) > (after.created_at, after.id))
        ]
        return sorted(found, key=lambda o: (o.created_at, o.id))[:limit]


class MemoryRoleRepository(RoleRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction
        self._t = _roles(transaction)

    @_round_trip
    async def list(self, tenant_id: UUID) -> list[Role]:
        return sorted(
            (role for _, role in self._t.rows() if role.tenant_id == tenant_id),
            key=lambda role: role.name,
        )

    @_round_trip
    async def get(self, tenant_id: UUID, name: str) -> Role | None:
        return self._t.get((tenant_id, name))

    @_round_trip
    async def add(self, role: Role) -> None:
        await self._t.lock((role.tenant_id, role.name))
        if self._t.get((role.tenant_id, role.name)) is not None:
            raise RoleAlreadyExistsError(role.name)
        self._t.put((role.tenant_id, role.name), role)

    @_round_trip
    async def save(self, role: Role) -> None:
        await self._t.lock((role.tenant_id, role.name))
        self._t.put((role.tenant_id, role.name), role)

    @_round_trip
    async def delete(self, tenant_id: UUID, name: str) -> bool:
        await self._t.lock((tenant_id, name))
        if self._t.get((tenant_id, name)) is None:
            return False
        self._t.delete((tenant_id, name))

        def strip(membership: Membership) -> None:
            membership.roles = membership.roles - {name}

        await _memberships(self._tx).update_where(
            lambda m: m.tenant_id == tenant_id and name in m.roles, strip
        )
        return True


class MemoryMembershipRepository(MembershipRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction
        self._t = _memberships(transaction)

    @_round_trip
    async def get(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> Membership | None:
        found = self._t.get((organization_id, user_id))
        return found if found is not None and found.tenant_id == tenant_id else None

    @_round_trip
    async def add(self, membership: Membership) -> None:
        key = (membership.organization_id, membership.user_id)
        await self._t.lock(key)
        if self._t.get(key) is not None:
            raise AlreadyMemberError(str(membership.user_id))
        self._t.put(key, membership)

    @_round_trip
    async def set_roles(self, membership: Membership) -> None:
        key = (membership.organization_id, membership.user_id)
        await self._t.lock(key)
        current = self._t.get(key)
        if current is not None and current.tenant_id == membership.tenant_id:
            current.roles = membership.roles
            self._t.put(key, current)

    @_round_trip
    async def delete(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> bool:
        key = (organization_id, user_id)
        await self._t.lock(key)
        current = self._t.get(key)
        if current is None or current.tenant_id != tenant_id:
            return False
        self._t.delete(key)
        await _session_organizations(self._tx).delete_where(
            lambda s: s.organization_id == organization_id and s.user_id == user_id
        )
        return True

    @_round_trip
    async def count_with_role(self, tenant_id: UUID, organization_id: UUID, role: str) -> int:
        return sum(
            1
            for _, m in self._t.rows()
            if m.tenant_id == tenant_id and m.organization_id == organization_id and role in m.roles
        )

    @_round_trip
    async def list_page(
        self, tenant_id: UUID, organization_id: UUID, after: Position | None, limit: int
    ) -> list[MemberEntry]:
        found = sorted(
            (
                m
                for _, m in self._t.rows()
                if m.tenant_id == tenant_id
                and m.organization_id == organization_id
                and (after is None or (m.created_at, m.id) > (after.created_at, after.id))
            ),
            key=lambda m: (m.created_at, m.id),
        )[:limit]
        accounts: _Table[UUID, Account] = _Table(self._tx, "accounts", Account)
        entries = []
        for membership in found:
            account = accounts.get(membership.user_id)
            entries.append(MemberEntry(membership, account.email.value if account else ""))
        return entries

    @_round_trip
    async def list_with_role(
        self, tenant_id: UUID, organization_id: UUID, role: str
    ) -> list[Membership]:
        return sorted(
            (
                m
                for _, m in self._t.rows()
                if m.tenant_id == tenant_id
                and m.organization_id == organization_id
                and role in m.roles
            ),
            key=lambda m: (m.created_at, m.id),
        )

    @_round_trip
    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[MembershipOf]:
        organizations = _organizations(self._tx)
        found = []
        for _, membership in self._t.rows():
            if membership.tenant_id != tenant_id or membership.user_id != user_id:
                continue
            organization = organizations.get(membership.organization_id)
            if organization is not None:
                found.append(MembershipOf(organization, membership))
        return sorted(found, key=lambda f: (f.membership.created_at, f.membership.id))


class MemoryInvitationRepository(InvitationRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._t = _invitations(transaction)

    @_round_trip
    async def add(self, invitation: Invitation) -> None:
        await self._t.lock(invitation.id)
        self._t.put(invitation.id, invitation)

    @_round_trip
    async def get(self, tenant_id: UUID, invitation_id: UUID) -> Invitation | None:
        found = self._t.get(invitation_id)
        return found if found is not None and found.tenant_id == tenant_id else None

    @_round_trip
    async def get_by_digest(self, tenant_id: UUID, code_digest: str) -> Invitation | None:
        return next(
            (
                i
                for _, i in self._t.rows()
                if i.tenant_id == tenant_id and i.code_digest == code_digest
            ),
            None,
        )

    @_round_trip
    async def record_acceptance(self, invitation: Invitation) -> bool:
        def accept(row: Invitation) -> None:
            row.accepted_at = invitation.accepted_at

        changed = await self._t.update_where(
            lambda row: row.id == invitation.id and row.accepted_at is None, accept
        )
        return changed == 1

    @_round_trip
    async def delete(self, tenant_id: UUID, invitation_id: UUID) -> bool:
        return (
            await self._t.delete_where(
                lambda row: row.id == invitation_id and row.tenant_id == tenant_id
            )
            == 1
        )

    @_round_trip
    async def list_pending(
        self, tenant_id: UUID, organization_id: UUID, now: datetime
    ) -> list[Invitation]:
        return sorted(
            (
                i
                for _, i in self._t.rows()
                if i.tenant_id == tenant_id
                and i.organization_id == organization_id
                and i.is_pending(now)
            ),
            key=lambda i: (i.created_at, i.id),
        )

    @_round_trip
    async def delete_expired(self, now: datetime) -> int:
        return await self._t.delete_where(lambda row: row.expires_at <= now)


class MemorySessionOrganizationRepository(SessionOrganizationRepository):
    def __init__(self, transaction: _Transaction) -> None:
        self._tx = transaction
        self._t = _session_organizations(transaction)

    @_round_trip
    async def set(
        self, tenant_id: UUID, session_id: UUID, user_id: UUID, organization_id: UUID | None
    ) -> None:
        await self._t.lock(session_id)
        if organization_id is None:
            self._t.delete(session_id)
        else:
            self._t.put(session_id, _SessionOrganization(tenant_id, user_id, organization_id))

    @_round_trip
    async def claims(self, tenant_id: UUID, session_id: UUID, user_id: UUID) -> OrgClaims | None:
        row = self._t.get(session_id)
        if row is None or row.tenant_id != tenant_id or row.user_id != user_id:
            return None
        return self._claims(tenant_id, row.organization_id, user_id)

    @_round_trip
    async def member_claims(
        self, tenant_id: UUID, organization_id: UUID, user_id: UUID
    ) -> OrgClaims | None:
        return self._claims(tenant_id, organization_id, user_id)

    def _claims(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> OrgClaims | None:
        organization = _organizations(self._tx).get(organization_id)
        membership = _memberships(self._tx).get((organization_id, user_id))
        if (
            organization is None
            or membership is None
            or organization.tenant_id != tenant_id
            or membership.tenant_id != tenant_id
        ):
            return None
        stored = [role for _, role in _roles(self._tx).rows() if role.tenant_id == tenant_id]
        roles = effective_roles(tenant_id, stored)
        return OrgClaims.of(
            organization.id,
            organization.slug,
            membership.roles,
            permissions_of(membership.roles, roles),
        )


def attach(uow: UnitOfWork, transaction: _Transaction) -> None:
    """Give a memory unit of work the repositories of this module."""
    uow.organizations = MemoryOrganizationRepository(transaction)
    uow.roles = MemoryRoleRepository(transaction)
    uow.memberships = MemoryMembershipRepository(transaction)
    uow.invitations = MemoryInvitationRepository(transaction)
    uow.session_organizations = MemorySessionOrganizationRepository(transaction)
