"""Organizations, roles, memberships and invitations: the use cases of section 19.

Self-service calls take the signed-in ``Principal`` and check permissions in
the caller's own membership (not a member: ``OrganizationNotFoundError``; a
member without the permission: ``InsufficientPermissionError``). Admin calls
take the API key's tenant. Every change that can touch the owners takes the
organization's row lock first, so the last-owner rule holds under concurrent
changes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import attrs

from identity.application.events import security_event
from identity.application.mail_templates import MailTemplates
from identity.application.pagination import Page, page_of
from identity.application.policy import Policy, policy_for
from identity.application.ports import (
    Clock,
    MemberEntry,
    MembershipOf,
    Position,
    UnitOfWork,
    UnitOfWorkFactory,
)
from identity.application.sessions import Principal
from identity.application.tokens import NO_CLIENT, ClientInfo, SessionTokens, TokenPair
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import AccountNotFoundError, InvalidTokenError
from identity.domain.events import EventType
from identity.domain.organizations import (
    ADMIN,
    INVITATION_TTL,
    MAX_METADATA_BYTES,
    MAX_ROLE_DESCRIPTION,
    ORG_MEMBERS_MANAGE,
    OWNER,
    AlreadyMemberError,
    BuiltInRoleError,
    InvalidOrganizationError,
    Invitation,
    InvitationInvalidError,
    InvitationNotFoundError,
    MemberNotFoundError,
    Membership,
    Organization,
    OrganizationNotFoundError,
    OrganizationSlugTakenError,
    OrgClaims,
    Role,
    RoleNotFoundError,
    UserOrganizationsDisabledError,
    check_may_assign,
    check_owner_remains,
    check_roles,
    effective_roles,
    is_built_in,
    slug_from_name,
    validate_org_name,
    validate_org_slug,
    validate_permissions,
    validate_role_name,
)
from identity.domain.tenants import Tenant


class InvitationDigester:
    """HMAC-SHA256 of an invitation code, keyed by the master secret and bound to the
    tenant: a database leak alone reveals no live code."""

    def __init__(self, secret_key: str) -> None:
        purpose = b"identity/invitation/v1"
        self._key = hmac.new(secret_key.encode(), purpose, hashlib.sha256).digest()

    def digest(self, tenant_id: UUID, code: str) -> str:
        return hmac.new(self._key, f"{tenant_id}|{code}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def new_code() -> str:
        # 192 bits: a code that lives seven days cannot be guessed, so no attempt counter.
        return secrets.token_urlsafe(24)


@attrs.frozen
class OrganizationServices:
    """What the organization use cases share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    tokens: SessionTokens
    templates: MailTemplates
    policy: Policy
    digester: InvitationDigester
    ui_base_url: str

    def policy_for(self, tenant: Tenant) -> Policy:
        return policy_for(self.policy, tenant)


@attrs.frozen
class MyOrganization:
    organization: Organization
    roles: frozenset[str]
    permissions: frozenset[str]


@attrs.frozen
class NewInvitation:
    """The stored invitation; the code itself only went out by mail."""

    invitation: Invitation


# --- shared rules ------------------------------------------------------------------


async def tenant_roles(uow: UnitOfWork, tenant_id: UUID) -> dict[str, Role]:
    return effective_roles(tenant_id, await uow.roles.list(tenant_id))


async def organization_claims(
    uow: UnitOfWork, tenant_id: UUID, user_id: UUID, organization: UUID | str
) -> OrgClaims | None:
    """The claims a token of ``user_id`` carries for ``organization`` (its id, or its slug),
    None when the user is not a member. For the OpenID Provider's ``organization``
    scope and for switching: one indexed read by id (one more by slug)."""
    if isinstance(organization, UUID):
        return await uow.session_organizations.member_claims(tenant_id, organization, user_id)
    try:
        organization_id = UUID(organization)
    except ValueError:
        found = await uow.organizations.get_by_slug(tenant_id, organization.strip().lower())
        if found is None:
            return None
        organization_id = found.id
    return await uow.session_organizations.member_claims(tenant_id, organization_id, user_id)


async def _member_of(
    uow: UnitOfWork, tenant_id: UUID, organization_id: UUID, user_id: UUID, *, lock: bool
) -> tuple[Organization, Membership]:
    organization = (
        await uow.organizations.lock(tenant_id, organization_id)
        if lock
        else await uow.organizations.get(tenant_id, organization_id)
    )
    membership = (
        await uow.memberships.get(tenant_id, organization_id, user_id)
        if organization is not None
        else None
    )
    if organization is None or membership is None:
        # Not a member: the organization might as well not exist.
        raise OrganizationNotFoundError(str(organization_id))
    return organization, membership


async def _change_roles(
    uow: UnitOfWork,
    tenant: Tenant,
    organization_id: UUID,
    target: Membership,
    roles: Iterable[str],
    now: datetime,
    client: ClientInfo,
    by: UUID | None,
) -> Membership:
    new_roles = check_roles(roles, await tenant_roles(uow, tenant.id))
    owners = await uow.memberships.count_with_role(tenant.id, organization_id, OWNER)
    check_owner_remains(target, new_roles, owners)
    if new_roles == target.roles:
        return target
    before = target.roles
    target.roles = new_roles
    await uow.memberships.set_roles(target)
    await _member_event(
        uow,
        EventType.MEMBER_ROLES_CHANGED,
        tenant,
        organization_id,
        target.user_id,
        now,
        client,
        by,
        roles=sorted(new_roles),
        previous_roles=sorted(before),
    )
    return target


async def _remove(
    uow: UnitOfWork,
    tenant: Tenant,
    organization_id: UUID,
    target: Membership,
    now: datetime,
    client: ClientInfo,
    by: UUID | None,
) -> None:
    owners = await uow.memberships.count_with_role(tenant.id, organization_id, OWNER)
    check_owner_remains(target, None, owners)
    await uow.memberships.delete(tenant.id, organization_id, target.user_id)
    await _member_event(
        uow, EventType.MEMBER_REMOVED, tenant, organization_id, target.user_id, now, client, by
    )


async def _add_member(
    uow: UnitOfWork,
    tenant: Tenant,
    organization_id: UUID,
    user_id: UUID,
    roles: frozenset[str],
    now: datetime,
    client: ClientInfo,
    by: UUID | None,
) -> Membership:
    membership = Membership(uuid.uuid4(), tenant.id, organization_id, user_id, roles, now)
    await uow.memberships.add(membership)
    await _member_event(
        uow,
        EventType.MEMBER_ADDED,
        tenant,
        organization_id,
        user_id,
        now,
        client,
        by,
        roles=sorted(roles),
    )
    return membership


async def _member_event(
    uow: UnitOfWork,
    kind: EventType,
    tenant: Tenant,
    organization_id: UUID,
    user_id: UUID,
    now: datetime,
    client: ClientInfo,
    by: UUID | None,
    **data: Any,
) -> None:
    """The security event of a membership change (added, removed, roles changed)."""
    await uow.events.add(
        security_event(
            kind,
            tenant.id,
            now,
            client,
            user_id=user_id,
            organization_id=str(organization_id),
            **data,
            by_user_id=str(by) if by else None,
        )
    )


async def _create_organization(
    uow: UnitOfWork,
    tenant: Tenant,
    name: str,
    slug: str | None,
    metadata: dict[str, Any],
    now: datetime,
    client: ClientInfo,
    by: UUID | None,
) -> Organization:
    name = validate_org_name(name)
    chosen = validate_org_slug(slug) if slug is not None else slug_from_name(name)
    organization = Organization(uuid.uuid4(), tenant.id, chosen, name, now, metadata)
    for attempt in range(5):
        try:
            await uow.organizations.add(organization)
            break
        except OrganizationSlugTakenError:
            if slug is not None or attempt == 4:
                raise
            # A slug made from the name: make it unique rather than refuse the name.
            organization.slug = f"{chosen[:56]}-{secrets.token_hex(3)}"
    await uow.events.add(
        security_event(
            EventType.ORGANIZATION_CREATED,
            tenant.id,
            now,
            client,
            user_id=by,
            organization_id=str(organization.id),
            slug=organization.slug,
        )
    )
    return organization


async def _delete_organization(
    uow: UnitOfWork, tenant_id: UUID, organization: Organization, now: datetime, client: ClientInfo
) -> None:
    await uow.organizations.delete(tenant_id, organization.id)
    await uow.events.add(
        security_event(
            EventType.ORGANIZATION_DELETED,
            tenant_id,
            now,
            client,
            organization_id=str(organization.id),
            slug=organization.slug,
        )
    )


def check_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidOrganizationError("metadata", "must be a JSON object")
    if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        raise InvalidOrganizationError("metadata", f"at most {MAX_METADATA_BYTES} bytes of JSON")
    return metadata


async def leave_all_organizations(
    uow: UnitOfWork, account: Account, now: datetime, client: ClientInfo
) -> None:
    """An erased account leaves every organization, inside the erasure's transaction.

    Where it was the last owner, the organization's admins become its owners;
    with no admin left, the organization is deleted (``organization.deleted``).
    """
    tenant_id = account.tenant_id
    for entry in await uow.memberships.list_for_user(tenant_id, account.id):
        organization = await uow.organizations.lock(tenant_id, entry.organization.id)
        membership = await uow.memberships.get(tenant_id, entry.organization.id, account.id)
        if organization is None or membership is None:
            continue
        if membership.is_owner:
            owners = await uow.memberships.count_with_role(tenant_id, organization.id, OWNER)
            if owners <= 1:
                admins = [
                    m
                    for m in await uow.memberships.list_with_role(tenant_id, organization.id, ADMIN)
                    if m.user_id != account.id
                ]
                if not admins:
                    await _delete_organization(uow, tenant_id, organization, now, client)
                    continue
                for admin in admins:
                    before = admin.roles
                    admin.roles = admin.roles | {OWNER}
                    await uow.memberships.set_roles(admin)
                    await uow.events.add(
                        security_event(
                            EventType.MEMBER_ROLES_CHANGED,
                            tenant_id,
                            now,
                            client,
                            user_id=admin.user_id,
                            organization_id=str(organization.id),
                            roles=sorted(admin.roles),
                            previous_roles=sorted(before),
                            reason="last_owner_erased",
                        )
                    )
        await uow.memberships.delete(tenant_id, organization.id, account.id)
        await uow.events.add(
            security_event(
                EventType.MEMBER_REMOVED,
                tenant_id,
                now,
                client,
                user_id=account.id,
                organization_id=str(organization.id),
                reason="user_deleted",
            )
        )


# --- self-service ------------------------------------------------------------------


class SelfServiceOrganizations:
    """The signed-in user's organizations (``/auth/organizations``)."""

    def __init__(self, services: OrganizationServices) -> None:
        self._s = services

    async def list_mine(self, principal: Principal) -> list[MyOrganization]:
        tenant_id = principal.tenant.id
        async with self._s.uow() as uow:
            entries = await uow.memberships.list_for_user(tenant_id, principal.account.id)
            roles = await tenant_roles(uow, tenant_id) if entries else {}
        return [
            MyOrganization(e.organization, e.membership.roles, e.membership.permissions(roles))
            for e in entries
        ]

    async def create(
        self,
        principal: Principal,
        name: str,
        slug: str | None = None,
        client: ClientInfo = NO_CLIENT,
    ) -> MyOrganization:
        """The caller becomes its owner; ``UserOrganizationsDisabledError`` when the tenant's
        ``allow_user_organizations`` is false."""
        tenant = principal.tenant
        if not self._s.policy_for(tenant).allow_user_organizations:
            raise UserOrganizationsDisabledError(tenant.slug)
        now = self._s.clock.now()
        async with self._s.uow() as uow:
            organization = await _create_organization(
                uow, tenant, name, slug, {}, now, client, principal.account.id
            )
            membership = await _add_member(
                uow,
                tenant,
                organization.id,
                principal.account.id,
                frozenset({OWNER}),
                now,
                client,
                principal.account.id,
            )
            roles = await tenant_roles(uow, tenant.id)
            await uow.commit()
        return MyOrganization(organization, membership.roles, membership.permissions(roles))

    async def members(
        self,
        principal: Principal,
        organization_id: UUID,
        after: Position | None = None,
        limit: int = 50,
    ) -> Page[MemberEntry]:
        """Any member may see the members."""
        tenant_id = principal.tenant.id
        async with self._s.uow() as uow:
            await _member_of(uow, tenant_id, organization_id, principal.account.id, lock=False)
            rows = await uow.memberships.list_page(tenant_id, organization_id, after, limit + 1)
        return page_of(rows, limit, lambda e: (e.membership.created_at, e.membership.id))

    async def change_roles(
        self,
        principal: Principal,
        organization_id: UUID,
        user_id: UUID,
        roles: Iterable[str],
        client: ClientInfo = NO_CLIENT,
    ) -> Membership:
        tenant = principal.tenant
        async with self._s.uow() as uow:
            _, actor = await _member_of(
                uow, tenant.id, organization_id, principal.account.id, lock=True
            )
            actor.require(ORG_MEMBERS_MANAGE, await tenant_roles(uow, tenant.id))
            target = await uow.memberships.get(tenant.id, organization_id, user_id)
            if target is None:
                raise MemberNotFoundError(str(user_id))
            check_may_assign(actor, target.roles, frozenset(roles))
            changed = await _change_roles(
                uow,
                tenant,
                organization_id,
                target,
                roles,
                self._s.clock.now(),
                client,
                principal.account.id,
            )
            await uow.commit()
        return changed

    async def remove(
        self,
        principal: Principal,
        organization_id: UUID,
        user_id: UUID,
        client: ClientInfo = NO_CLIENT,
    ) -> None:
        """Remove a member (``org:members:manage``), or leave (oneself: no permission)."""
        tenant = principal.tenant
        async with self._s.uow() as uow:
            _, actor = await _member_of(
                uow, tenant.id, organization_id, principal.account.id, lock=True
            )
            if user_id == principal.account.id:
                target = actor
            else:
                actor.require(ORG_MEMBERS_MANAGE, await tenant_roles(uow, tenant.id))
                found = await uow.memberships.get(tenant.id, organization_id, user_id)
                if found is None:
                    raise MemberNotFoundError(str(user_id))
                target = found
                check_may_assign(actor, target.roles, None)
            await _remove(
                uow,
                tenant,
                organization_id,
                target,
                self._s.clock.now(),
                client,
                principal.account.id,
            )
            await uow.commit()

    async def invite(
        self,
        principal: Principal,
        organization_id: UUID,
        email: Email,
        roles: Iterable[str],
        client: ClientInfo = NO_CLIENT,
    ) -> Invitation:
        """Mail a one-time code (and a link to the hosted pages) to ``email``."""
        s = self._s
        tenant = principal.tenant
        now = s.clock.now()
        code = s.digester.new_code()
        async with s.uow() as uow:
            organization, actor = await _member_of(
                uow, tenant.id, organization_id, principal.account.id, lock=False
            )
            known = await tenant_roles(uow, tenant.id)
            actor.require(ORG_MEMBERS_MANAGE, known)
            granted = check_roles(roles, known)
            check_may_assign(actor, None, granted)
            invited = await uow.accounts.get_by_email(tenant.id, email.key)
            if invited is not None and await uow.memberships.get(
                tenant.id, organization_id, invited.id
            ):
                raise AlreadyMemberError(email.value)
            invitation = Invitation(
                id=uuid.uuid4(),
                tenant_id=tenant.id,
                organization_id=organization_id,
                email=email.value,
                email_key=email.key,
                roles=granted,
                code_digest=s.digester.digest(tenant.id, code),
                created_at=now,
                expires_at=now + INVITATION_TTL,
                invited_by=principal.account.id,
            )
            await uow.invitations.add(invitation)
            await uow.outbox.add(
                tenant.id,
                s.templates.organization_invitation(
                    email.value,
                    code,
                    organization.name,
                    self._link(tenant, code),
                    sender=s.policy_for(tenant).email_from,
                ),
                now,
            )
            await uow.events.add(
                security_event(
                    EventType.INVITATION_CREATED,
                    tenant.id,
                    now,
                    client,
                    user_id=principal.account.id,
                    organization_id=str(organization_id),
                    invitation_id=str(invitation.id),
                    roles=sorted(granted),
                )
            )
            await uow.commit()
        return invitation

    def _link(self, tenant: Tenant, code: str) -> str:
        query = {"code": code}
        if tenant.slug != "default":
            query["tenant"] = tenant.slug
        return f"{self._s.ui_base_url.rstrip('/')}/ui/invitations?{urlencode(query)}"

    async def invitations(self, principal: Principal, organization_id: UUID) -> list[Invitation]:
        tenant_id = principal.tenant.id
        async with self._s.uow() as uow:
            _, actor = await _member_of(
                uow, tenant_id, organization_id, principal.account.id, lock=False
            )
            actor.require(ORG_MEMBERS_MANAGE, await tenant_roles(uow, tenant_id))
            return await uow.invitations.list_pending(
                tenant_id, organization_id, self._s.clock.now()
            )

    async def revoke_invitation(
        self, principal: Principal, organization_id: UUID, invitation_id: UUID
    ) -> None:
        tenant_id = principal.tenant.id
        async with self._s.uow() as uow:
            _, actor = await _member_of(
                uow, tenant_id, organization_id, principal.account.id, lock=False
            )
            actor.require(ORG_MEMBERS_MANAGE, await tenant_roles(uow, tenant_id))
            invitation = await uow.invitations.get(tenant_id, invitation_id)
            if invitation is None or invitation.organization_id != organization_id:
                raise InvitationNotFoundError(str(invitation_id))
            await uow.invitations.delete(tenant_id, invitation_id)
            await uow.commit()

    async def accept(
        self, principal: Principal, code: str, client: ClientInfo = NO_CLIENT
    ) -> MyOrganization:
        """Spend an invitation code: the signed-in address must be the invited one
        (``InvitationEmailMismatchError``); unknown, used or expired codes are
        ``InvitationInvalidError``."""
        s = self._s
        tenant = principal.tenant
        account = principal.account
        digest = s.digester.digest(tenant.id, code.strip())
        async with s.uow() as uow:
            now = s.clock.now()
            invitation = await uow.invitations.get_by_digest(tenant.id, digest)
            if invitation is None:
                raise InvitationInvalidError("unknown code")
            invitation.accept(digest, account.email.key, now)
            organization = await uow.organizations.lock(tenant.id, invitation.organization_id)
            if organization is None or not await uow.invitations.record_acceptance(invitation):
                raise InvitationInvalidError("organization gone or code spent meanwhile")
            known = await tenant_roles(uow, tenant.id)
            # Roles deleted since the invitation are dropped; a member is always one.
            granted = frozenset(r for r in invitation.roles if r in known) or frozenset({"member"})
            membership = await _add_member(
                uow,
                tenant,
                organization.id,
                account.id,
                granted,
                now,
                client,
                invitation.invited_by,
            )
            await uow.events.add(
                security_event(
                    EventType.INVITATION_ACCEPTED,
                    tenant.id,
                    now,
                    client,
                    user_id=account.id,
                    organization_id=str(organization.id),
                    invitation_id=str(invitation.id),
                )
            )
            await uow.commit()
        return MyOrganization(organization, membership.roles, membership.permissions(known))

    async def switch(
        self,
        principal: Principal,
        organization_id: UUID | None,
        client: ClientInfo = NO_CLIENT,
    ) -> TokenPair:
        """The caller's session acts in ``organization_id`` (None: in none) from now on:
        a token pair of the same session whose access token carries the claims."""
        s = self._s
        tenant = principal.tenant
        policy = s.policy_for(tenant)
        async with s.uow() as uow:
            now = s.clock.now()
            session = await uow.sessions.get(tenant.id, principal.session_id)
            if session is None or not session.is_active(now):
                raise InvalidTokenError("session ended")
            claims: OrgClaims | None = None
            if organization_id is not None:
                claims = await uow.session_organizations.member_claims(
                    tenant.id, organization_id, principal.account.id
                )
                if claims is None:
                    raise OrganizationNotFoundError(str(organization_id))
            await uow.session_organizations.set(
                tenant.id, session.id, principal.account.id, organization_id
            )
            await uow.commit()
        return s.tokens.pair(session, principal.account, tenant, policy, now, org=claims)


# --- admin -------------------------------------------------------------------------


class AdminOrganizations:
    """``/admin/organizations`` and ``/admin/roles`` (scope ``organizations:manage``)."""

    def __init__(self, services: OrganizationServices) -> None:
        self._s = services

    async def list_page(
        self, tenant: Tenant, after: Position | None = None, limit: int = 50
    ) -> Page[Organization]:
        async with self._s.uow() as uow:
            rows = await uow.organizations.list_page(tenant.id, after, limit + 1)
        return page_of(rows, limit, lambda o: (o.created_at, o.id))

    async def create(
        self,
        tenant: Tenant,
        name: str,
        slug: str | None = None,
        metadata: dict[str, Any] | None = None,
        client: ClientInfo = NO_CLIENT,
    ) -> Organization:
        async with self._s.uow() as uow:
            organization = await _create_organization(
                uow,
                tenant,
                name,
                slug,
                check_metadata(metadata or {}),
                self._s.clock.now(),
                client,
                None,
            )
            await uow.commit()
        return organization

    async def get(self, tenant: Tenant, organization_id: UUID) -> Organization:
        async with self._s.uow() as uow:
            found = await uow.organizations.get(tenant.id, organization_id)
        if found is None:
            raise OrganizationNotFoundError(str(organization_id))
        return found

    async def update(
        self,
        tenant: Tenant,
        organization_id: UUID,
        *,
        name: str | None = None,
        slug: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Organization:
        async with self._s.uow() as uow:
            found = await uow.organizations.lock(tenant.id, organization_id)
            if found is None:
                raise OrganizationNotFoundError(str(organization_id))
            if name is not None:
                found.name = validate_org_name(name)
            if slug is not None:
                found.slug = validate_org_slug(slug)
            if metadata is not None:
                found.metadata = check_metadata(metadata)
            await uow.organizations.update(found)
            await uow.commit()
        return found

    async def delete(
        self, tenant: Tenant, organization_id: UUID, client: ClientInfo = NO_CLIENT
    ) -> None:
        async with self._s.uow() as uow:
            found = await uow.organizations.lock(tenant.id, organization_id)
            if found is None:
                raise OrganizationNotFoundError(str(organization_id))
            await _delete_organization(uow, tenant.id, found, self._s.clock.now(), client)
            await uow.commit()

    async def members(
        self,
        tenant: Tenant,
        organization_id: UUID,
        after: Position | None = None,
        limit: int = 50,
    ) -> Page[MemberEntry]:
        async with self._s.uow() as uow:
            rows = await uow.memberships.list_page(tenant.id, organization_id, after, limit + 1)
            # Members of the tenant's organization prove it exists: only an empty page
            # needs the organization read (a fifth of a page's cost otherwise).
            if not rows and await uow.organizations.get(tenant.id, organization_id) is None:
                raise OrganizationNotFoundError(str(organization_id))
        return page_of(rows, limit, lambda e: (e.membership.created_at, e.membership.id))

    async def add_member(
        self,
        tenant: Tenant,
        organization_id: UUID,
        user_id: UUID,
        roles: Iterable[str],
        client: ClientInfo = NO_CLIENT,
    ) -> Membership:
        async with self._s.uow() as uow:
            if await uow.organizations.lock(tenant.id, organization_id) is None:
                raise OrganizationNotFoundError(str(organization_id))
            if await uow.accounts.get(tenant.id, user_id) is None:
                raise AccountNotFoundError(str(user_id))
            granted = check_roles(roles, await tenant_roles(uow, tenant.id))
            membership = await _add_member(
                uow, tenant, organization_id, user_id, granted, self._s.clock.now(), client, None
            )
            await uow.commit()
        return membership

    async def change_roles(
        self,
        tenant: Tenant,
        organization_id: UUID,
        user_id: UUID,
        roles: Iterable[str],
        client: ClientInfo = NO_CLIENT,
    ) -> Membership:
        async with self._s.uow() as uow:
            if await uow.organizations.lock(tenant.id, organization_id) is None:
                raise OrganizationNotFoundError(str(organization_id))
            target = await uow.memberships.get(tenant.id, organization_id, user_id)
            if target is None:
                raise MemberNotFoundError(str(user_id))
            changed = await _change_roles(
                uow, tenant, organization_id, target, roles, self._s.clock.now(), client, None
            )
            await uow.commit()
        return changed

    async def remove_member(
        self,
        tenant: Tenant,
        organization_id: UUID,
        user_id: UUID,
        client: ClientInfo = NO_CLIENT,
    ) -> None:
        async with self._s.uow() as uow:
            if await uow.organizations.lock(tenant.id, organization_id) is None:
                raise OrganizationNotFoundError(str(organization_id))
            target = await uow.memberships.get(tenant.id, organization_id, user_id)
            if target is None:
                raise MemberNotFoundError(str(user_id))
            await _remove(uow, tenant, organization_id, target, self._s.clock.now(), client, None)
            await uow.commit()

    # --- roles ---

    async def roles(self, tenant: Tenant) -> list[Role]:
        async with self._s.uow() as uow:
            found = await tenant_roles(uow, tenant.id)
        return [found[name] for name in sorted(found)]

    async def create_role(
        self,
        tenant: Tenant,
        name: str,
        description: str = "",
        permissions: Iterable[str] = (),
    ) -> Role:
        name = validate_role_name(name)
        if is_built_in(name):
            raise BuiltInRoleError(name)
        role = Role(
            tenant.id,
            name,
            _description(description),
            validate_permissions(permissions),
            self._s.clock.now(),
        )
        async with self._s.uow() as uow:
            await uow.roles.add(role)
            await uow.commit()
        return role

    async def update_role(
        self,
        tenant: Tenant,
        name: str,
        *,
        description: str | None = None,
        permissions: Iterable[str] | None = None,
    ) -> Role:
        async with self._s.uow() as uow:
            role = (await tenant_roles(uow, tenant.id)).get(name)
            if role is None:
                raise RoleNotFoundError(name)
            if description is not None:
                role.description = _description(description)
            if permissions is not None:
                role.permissions = validate_permissions(permissions)
            if role.created_at is None:
                role.created_at = self._s.clock.now()
            await uow.roles.save(role)
            await uow.commit()
        return role

    async def delete_role(self, tenant: Tenant, name: str) -> None:
        """Built-in roles cannot be deleted (``BuiltInRoleError``); a deleted role is
        taken from every member that held it."""
        if is_built_in(name):
            raise BuiltInRoleError(name)
        async with self._s.uow() as uow:
            if not await uow.roles.delete(tenant.id, name):
                raise RoleNotFoundError(name)
            await uow.commit()


def _description(description: str) -> str:
    description = description.strip()
    if len(description) > MAX_ROLE_DESCRIPTION:
        raise InvalidOrganizationError("description", f"at most {MAX_ROLE_DESCRIPTION} characters")
    return description


async def memberships_of(uow: UnitOfWork, account: Account) -> list[MembershipOf]:
    """The account's memberships, for its export."""
    return await uow.memberships.list_for_user(account.tenant_id, account.id)
