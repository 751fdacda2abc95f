"""Repositories of organizations, roles, memberships, invitations and the organization
each session acts in, over SQLAlchemy Core (section 19). They never commit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Uuid, and_, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.adapters.sqlalchemy import tables as t
from identity.adapters.sqlalchemy.native import ManyRowsRead
from identity.adapters.sqlalchemy.types import UtcDateTime
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
from identity.domain.organizations import (
    AlreadyMemberError,
    Invitation,
    Membership,
    Organization,
    OrganizationSlugTakenError,
    OrgClaims,
    Role,
    RoleAlreadyExistsError,
    permissions_of,
)

_O = t.organizations
_R = t.org_roles
_M = t.memberships
_MR = t.membership_roles
_I = t.invitations
_SO = t.session_organizations


def _organization(row: Any) -> Organization:
    return Organization(
        id=row.id,
        tenant_id=row.tenant_id,
        slug=row.slug,
        name=row.name,
        created_at=row.created_at,
        metadata=dict(row.data or {}),
    )


def _role(row: Any) -> Role:
    return Role(
        tenant_id=row.tenant_id,
        name=row.name,
        description=row.description,
        permissions=frozenset(row.permissions or ()),
        created_at=row.created_at,
    )


class SqlOrganizationRepository(OrganizationRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, organization: Organization) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(_O).values(
                        id=organization.id,
                        tenant_id=organization.tenant_id,
                        slug=organization.slug,
                        name=organization.name,
                        data=organization.metadata,
                        created_at=organization.created_at,
                    )
                )
        except IntegrityError:
            # uq_organizations_tenant_id_slug: the only constraint a new id can break.
            raise OrganizationSlugTakenError(organization.slug) from None

    async def get(self, tenant_id: UUID, organization_id: UUID) -> Organization | None:
        row = (
            await self._c.execute(
                select(_O).where(_O.c.tenant_id == tenant_id, _O.c.id == organization_id)
            )
        ).first()
        return _organization(row) if row is not None else None

    async def get_by_slug(self, tenant_id: UUID, slug: str) -> Organization | None:
        row = (
            await self._c.execute(select(_O).where(_O.c.tenant_id == tenant_id, _O.c.slug == slug))
        ).first()
        return _organization(row) if row is not None else None

    async def lock(self, tenant_id: UUID, organization_id: UUID) -> Organization | None:
        # FOR UPDATE on Postgres; SQLite renders none and needs none (every
        # transaction holds the database's write lock from its first statement).
        row = (
            await self._c.execute(
                select(_O)
                .where(_O.c.tenant_id == tenant_id, _O.c.id == organization_id)
                .with_for_update()
            )
        ).first()
        return _organization(row) if row is not None else None

    async def update(self, organization: Organization) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    update(_O)
                    .where(_O.c.tenant_id == organization.tenant_id, _O.c.id == organization.id)
                    .values(
                        slug=organization.slug,
                        name=organization.name,
                        data=organization.metadata,
                    )
                )
        except IntegrityError:
            raise OrganizationSlugTakenError(organization.slug) from None

    async def delete(self, tenant_id: UUID, organization_id: UUID) -> bool:
        # Memberships (and their roles), invitations and session contexts go by
        # their foreign keys' ON DELETE CASCADE.
        result = await self._c.execute(
            delete(_O).where(_O.c.tenant_id == tenant_id, _O.c.id == organization_id)
        )
        return result.rowcount == 1

    async def list_page(
        self, tenant_id: UUID, after: Position | None, limit: int
    ) -> list[Organization]:
        query = select(_O).where(_O.c.tenant_id == tenant_id)
        if after is not None:
            query = query.where(
                tuple_(_O.c.created_at, _O.c.id) > tuple_(after.created_at, after.id)
            )
        rows = await self._c.execute(query.order_by(_O.c.created_at, _O.c.id).limit(limit))
        return [_organization(row) for row in rows]


class SqlRoleRepository(RoleRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def list(self, tenant_id: UUID) -> list[Role]:
        rows = await self._c.execute(
            select(_R).where(_R.c.tenant_id == tenant_id).order_by(_R.c.name)
        )
        return [_role(row) for row in rows]

    async def get(self, tenant_id: UUID, name: str) -> Role | None:
        row = (
            await self._c.execute(select(_R).where(_R.c.tenant_id == tenant_id, _R.c.name == name))
        ).first()
        return _role(row) if row is not None else None

    def _values(self, role: Role) -> dict[str, Any]:
        return {
            "tenant_id": role.tenant_id,
            "name": role.name,
            "description": role.description,
            "permissions": sorted(role.permissions),
            "created_at": role.created_at,
        }

    async def add(self, role: Role) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(insert(_R).values(**self._values(role)))
        except IntegrityError:
            raise RoleAlreadyExistsError(role.name) from None

    async def save(self, role: Role) -> None:
        changed = await self._c.execute(
            update(_R)
            .where(_R.c.tenant_id == role.tenant_id, _R.c.name == role.name)
            .values(description=role.description, permissions=sorted(role.permissions))
        )
        if changed.rowcount == 0:
            await self.add(role)

    async def delete(self, tenant_id: UUID, name: str) -> bool:
        result = await self._c.execute(
            delete(_R).where(_R.c.tenant_id == tenant_id, _R.c.name == name)
        )
        await self._c.execute(delete(_MR).where(_MR.c.tenant_id == tenant_id, _MR.c.role == name))
        return result.rowcount == 1


async def _roles_of(connection: AsyncConnection, ids: Sequence[UUID]) -> dict[UUID, set[str]]:
    found: dict[UUID, set[str]] = defaultdict(set)
    if ids:
        rows = await connection.execute(
            select(_MR.c.membership_id, _MR.c.role).where(_MR.c.membership_id.in_(ids))
        )
        for row in rows:
            found[row.membership_id].add(row.role)
    return found


def _member_page(after: bool) -> Any:
    """A page of members with their emails, then each one's roles (one row per role,
    or one with no role): one statement, read natively on Postgres."""
    page = (
        select(_M, t.users.c.email)
        .select_from(_M.join(t.users, t.users.c.id == _M.c.user_id))
        .where(
            _M.c.tenant_id == bindparam("tenant_id"),
            _M.c.organization_id == bindparam("organization_id"),
        )
    )
    if after:
        # A row comparison the (organization_id, created_at, id) index answers directly.
        page = page.where(
            tuple_(_M.c.created_at, _M.c.id)
            > tuple_(
                bindparam("after_created_at", type_=UtcDateTime()),
                bindparam("after_id", type_=Uuid()),
            )
        )
    members = page.order_by(_M.c.created_at, _M.c.id).limit(bindparam("limit")).subquery()
    return (
        select(members, _MR.c.role)
        .select_from(members.outerjoin(_MR, _MR.c.membership_id == members.c.id))
        .order_by(members.c.created_at, members.c.id)
    )


_MEMBERS_FIRST_READ = ManyRowsRead(_member_page(after=False), datetimes=("created_at",))
_MEMBERS_AFTER_READ = ManyRowsRead(_member_page(after=True), datetimes=("created_at",))


def _membership(row: Any, roles: Iterable[str]) -> Membership:
    return Membership(
        id=row.id,
        tenant_id=row.tenant_id,
        organization_id=row.organization_id,
        user_id=row.user_id,
        roles=frozenset(roles),
        created_at=row.created_at,
    )


class SqlMembershipRepository(MembershipRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def get(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> Membership | None:
        rows = (
            await self._c.execute(
                select(_M, _MR.c.role)
                .select_from(_M.outerjoin(_MR, _MR.c.membership_id == _M.c.id))
                .where(
                    _M.c.tenant_id == tenant_id,
                    _M.c.organization_id == organization_id,
                    _M.c.user_id == user_id,
                )
            )
        ).all()
        if not rows:
            return None
        return _membership(rows[0], (row.role for row in rows if row.role is not None))

    async def add(self, membership: Membership) -> None:
        try:
            async with self._c.begin_nested():
                await self._c.execute(
                    insert(_M).values(
                        id=membership.id,
                        tenant_id=membership.tenant_id,
                        organization_id=membership.organization_id,
                        user_id=membership.user_id,
                        created_at=membership.created_at,
                    )
                )
        except IntegrityError:
            raise AlreadyMemberError(str(membership.user_id)) from None
        await self._insert_roles(membership)

    async def _insert_roles(self, membership: Membership) -> None:
        if membership.roles:
            await self._c.execute(
                insert(_MR),
                [
                    {
                        "membership_id": membership.id,
                        "role": role,
                        "tenant_id": membership.tenant_id,
                        "organization_id": membership.organization_id,
                    }
                    for role in sorted(membership.roles)
                ],
            )

    async def set_roles(self, membership: Membership) -> None:
        await self._c.execute(delete(_MR).where(_MR.c.membership_id == membership.id))
        await self._insert_roles(membership)

    async def delete(self, tenant_id: UUID, organization_id: UUID, user_id: UUID) -> bool:
        result = await self._c.execute(
            delete(_M).where(
                _M.c.tenant_id == tenant_id,
                _M.c.organization_id == organization_id,
                _M.c.user_id == user_id,
            )
        )
        await self._c.execute(
            delete(_SO).where(_SO.c.organization_id == organization_id, _SO.c.user_id == user_id)
        )
        return result.rowcount == 1

    async def count_with_role(self, tenant_id: UUID, organization_id: UUID, role: str) -> int:
        count = await self._c.scalar(
            select(func.count())
            .select_from(_MR)
            .where(
                _MR.c.tenant_id == tenant_id,
                _MR.c.organization_id == organization_id,
                _MR.c.role == role,
            )
        )
        return int(count or 0)

    async def list_page(
        self, tenant_id: UUID, organization_id: UUID, after: Position | None, limit: int
    ) -> list[MemberEntry]:
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "organization_id": organization_id,
            "limit": limit,
        }
        read = _MEMBERS_FIRST_READ
        if after is not None:
            read = _MEMBERS_AFTER_READ
            params.update(after_created_at=after.created_at, after_id=after.id)
        rows = await read(self._c, params)
        roles: dict[UUID, list[str]] = {}
        firsts = []
        for row in rows:  # in page order, a member's rows together
            if row.id not in roles:
                roles[row.id] = []
                firsts.append(row)
            if row.role is not None:
                roles[row.id].append(row.role)
        return [MemberEntry(_membership(row, roles[row.id]), row.email) for row in firsts]

    async def list_with_role(
        self, tenant_id: UUID, organization_id: UUID, role: str
    ) -> list[Membership]:
        rows = (
            await self._c.execute(
                select(_M)
                .select_from(_M.join(_MR, _MR.c.membership_id == _M.c.id))
                .where(
                    _MR.c.tenant_id == tenant_id,
                    _MR.c.organization_id == organization_id,
                    _MR.c.role == role,
                )
                .order_by(_M.c.created_at, _M.c.id)
            )
        ).all()
        roles = await _roles_of(self._c, [row.id for row in rows])
        return [_membership(row, roles.get(row.id, ())) for row in rows]

    async def list_for_user(self, tenant_id: UUID, user_id: UUID) -> list[MembershipOf]:
        rows = (
            await self._c.execute(
                select(
                    _M,
                    _O.c.slug,
                    _O.c.name,
                    _O.c.data,
                    _O.c.created_at.label("organization_created_at"),
                )
                .select_from(_M.join(_O, _O.c.id == _M.c.organization_id))
                .where(_M.c.tenant_id == tenant_id, _M.c.user_id == user_id)
                .order_by(_M.c.created_at, _M.c.id)
            )
        ).all()
        roles = await _roles_of(self._c, [row.id for row in rows])
        return [
            MembershipOf(
                Organization(
                    id=row.organization_id,
                    tenant_id=row.tenant_id,
                    slug=row.slug,
                    name=row.name,
                    created_at=row.organization_created_at,
                    metadata=dict(row.data or {}),
                ),
                _membership(row, roles.get(row.id, ())),
            )
            for row in rows
        ]


def _invitation(row: Any) -> Invitation:
    return Invitation(
        id=row.id,
        tenant_id=row.tenant_id,
        organization_id=row.organization_id,
        email=row.email,
        email_key=row.email_key,
        roles=frozenset(row.roles.split()),
        code_digest=row.code_digest,
        created_at=row.created_at,
        expires_at=row.expires_at,
        invited_by=row.invited_by,
        accepted_at=row.accepted_at,
    )


class SqlInvitationRepository(InvitationRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def add(self, invitation: Invitation) -> None:
        await self._c.execute(
            insert(_I).values(
                id=invitation.id,
                tenant_id=invitation.tenant_id,
                organization_id=invitation.organization_id,
                email=invitation.email,
                email_key=invitation.email_key,
                roles=" ".join(sorted(invitation.roles)),
                code_digest=invitation.code_digest,
                created_at=invitation.created_at,
                expires_at=invitation.expires_at,
                invited_by=invitation.invited_by,
                accepted_at=invitation.accepted_at,
            )
        )

    async def get(self, tenant_id: UUID, invitation_id: UUID) -> Invitation | None:
        row = (
            await self._c.execute(
                select(_I).where(_I.c.tenant_id == tenant_id, _I.c.id == invitation_id)
            )
        ).first()
        return _invitation(row) if row is not None else None

    async def get_by_digest(self, tenant_id: UUID, code_digest: str) -> Invitation | None:
        row = (
            await self._c.execute(
                select(_I).where(_I.c.tenant_id == tenant_id, _I.c.code_digest == code_digest)
            )
        ).first()
        return _invitation(row) if row is not None else None

    async def record_acceptance(self, invitation: Invitation) -> bool:
        result = await self._c.execute(
            update(_I)
            .where(
                _I.c.tenant_id == invitation.tenant_id,
                _I.c.id == invitation.id,
                _I.c.accepted_at.is_(None),
            )
            .values(accepted_at=invitation.accepted_at)
        )
        return result.rowcount == 1

    async def delete(self, tenant_id: UUID, invitation_id: UUID) -> bool:
        result = await self._c.execute(
            delete(_I).where(_I.c.tenant_id == tenant_id, _I.c.id == invitation_id)
        )
        return result.rowcount == 1

    async def list_pending(
        self, tenant_id: UUID, organization_id: UUID, now: datetime
    ) -> list[Invitation]:
        rows = await self._c.execute(
            select(_I)
            .where(
                _I.c.tenant_id == tenant_id,
                _I.c.organization_id == organization_id,
                _I.c.accepted_at.is_(None),
                _I.c.expires_at > now,
            )
            .order_by(_I.c.created_at, _I.c.id)
        )
        return [_invitation(row) for row in rows]

    async def delete_expired(self, now: datetime) -> int:
        result = await self._c.execute(delete(_I).where(_I.c.expires_at <= now))
        return result.rowcount


class SqlSessionOrganizationRepository(SessionOrganizationRepository):
    def __init__(self, connection: AsyncConnection) -> None:
        self._c = connection

    async def set(
        self, tenant_id: UUID, session_id: UUID, user_id: UUID, organization_id: UUID | None
    ) -> None:
        await self._c.execute(
            delete(_SO).where(_SO.c.tenant_id == tenant_id, _SO.c.session_id == session_id)
        )
        if organization_id is not None:
            await self._c.execute(
                insert(_SO).values(
                    session_id=session_id,
                    tenant_id=tenant_id,
                    user_id=user_id,
                    organization_id=organization_id,
                )
            )

    # One statement: the organization, the membership, its roles and the
    # tenant's grants to them, each by its primary key or a unique index.
    _CLAIMS = select(_O.c.id, _O.c.slug, _MR.c.role, _R.c.permissions).select_from(
        _O.join(_M, _M.c.organization_id == _O.c.id)
        .outerjoin(_MR, _MR.c.membership_id == _M.c.id)
        .outerjoin(_R, and_(_R.c.tenant_id == _M.c.tenant_id, _R.c.name == _MR.c.role))
    )

    async def claims(self, tenant_id: UUID, session_id: UUID, user_id: UUID) -> OrgClaims | None:
        query = self._CLAIMS.join(
            _SO, and_(_SO.c.organization_id == _O.c.id, _SO.c.user_id == _M.c.user_id)
        ).where(
            _SO.c.session_id == session_id,
            _SO.c.tenant_id == tenant_id,
            _M.c.user_id == user_id,
            _O.c.tenant_id == tenant_id,
        )
        return claims_of_rows((await self._c.execute(query)).all())

    async def member_claims(
        self, tenant_id: UUID, organization_id: UUID, user_id: UUID
    ) -> OrgClaims | None:
        query = self._CLAIMS.where(
            _O.c.id == organization_id, _O.c.tenant_id == tenant_id, _M.c.user_id == user_id
        )
        return claims_of_rows((await self._c.execute(query)).all())


def claims_of_rows(rows: Sequence[Any]) -> OrgClaims | None:
    """The claims of the rows the repository's reads (and refresh's hot read) answer."""
    if not rows:
        return None
    roles = {row.role for row in rows if row.role is not None}
    granted: set[str] = set(permissions_of(roles, {}))  # the built-ins' own
    for row in rows:
        granted.update(row.permissions or ())
    return OrgClaims.of(rows[0].id, rows[0].slug, roles, granted)


def attach(uow: UnitOfWork, connection: AsyncConnection) -> None:
    """Give a SQL unit of work the repositories of this module."""
    uow.organizations = SqlOrganizationRepository(connection)
    uow.roles = SqlRoleRepository(connection)
    uow.memberships = SqlMembershipRepository(connection)
    uow.invitations = SqlInvitationRepository(connection)
    uow.session_organizations = SqlSessionOrganizationRepository(connection)
