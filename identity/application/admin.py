"""Administration of users: the ``identity users`` commands and the ``/admin/users`` API.

Every use case acts inside one tenant, named by the caller (the API key's
tenant at the edge): another tenant's user is simply not found.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from uuid import UUID

import attrs

from identity.application.events import security_event
from identity.application.pagination import Page, page_of
from identity.application.passwords import check_new_password
from identity.application.ports import (
    Clock,
    CommonPasswords,
    PasswordHasher,
    Position,
    UnitOfWork,
    UnitOfWorkFactory,
)
from identity.application.tokens import NO_CLIENT, ClientInfo
from identity.domain.accounts import Account
from identity.domain.browser_sessions import BROWSER
from identity.domain.emails import Email
from identity.domain.errors import AccountNotFoundError, TenantNotFoundError
from identity.domain.events import EventType
from identity.domain.sessions import Session
from identity.domain.tenants import Tenant


class UserAdmin:
    """What the ``identity users`` commands do."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow
        self._clock = clock

    async def show(self, tenant_slug: str, email: Email) -> Account:
        async with self._uow() as uow:
            tenant = await uow.tenants.get_by_slug(tenant_slug)
            if tenant is None:
                raise TenantNotFoundError(tenant_slug)
            account = await uow.accounts.get_by_email(tenant.id, email.key)
        if account is None:
            raise AccountNotFoundError(email.value)
        return account

    async def set_active(self, tenant_slug: str, email: Email, active: bool) -> tuple[Account, int]:
        """Enable or disable; disabling ends every session. Returns sessions ended."""
        async with self._uow() as uow:
            tenant = await uow.tenants.get_by_slug(tenant_slug)
            if tenant is None:
                raise TenantNotFoundError(tenant_slug)
            account = await uow.accounts.get_by_email(tenant.id, email.key)
            if account is None:
                raise AccountNotFoundError(email.value)
            now = self._clock.now()
            ended = 0
            was_active = account.is_active
            if active:
                account.enable(now)
            else:
                account.disable(now)
            # The account row first, so a racing sign-in cannot slip a session in (see
            # UpdateUser).
            await uow.accounts.update(account)
            if not active:
                ended = await uow.sessions.revoke_all_for_account(
                    tenant.id, account.id, now, "account_disabled"
                )
            # The operator at the command line: no request, so no ip or user agent.
            operator = ClientInfo()
            if was_active != active:
                kind = EventType.USER_ENABLED if active else EventType.USER_DISABLED
                await uow.events.add(
                    security_event(kind, tenant.id, now, operator, user_id=account.id)
                )
            if ended:
                await uow.events.add(
                    security_event(
                        EventType.SESSION_REVOKED,
                        tenant.id,
                        now,
                        operator,
                        user_id=account.id,
                        reason="account_disabled",
                        sessions_revoked=ended,
                    )
                )
            await uow.commit()
        return account, ended


# --- the admin API ---------------------------------------------------------------


@attrs.frozen
class ManagedUser:
    """An account as an administrator sees it: with the providers it is linked to."""

    account: Account
    identities: list[str]


async def erase_account(
    uow: UnitOfWork, account: Account, client: ClientInfo, now: datetime, *, by: str
) -> bool:
    """Erase ``account`` and everything tied to it, inside the caller's transaction,
    and record ``user.deleted`` (events outlive their user).

    Rows with a foreign key to the account go with it; one-time codes, queued
    mail and queued code requests are keyed by the address, so they are deleted
    by it. The address is free again at commit.
    """
    if not await uow.accounts.delete(account.tenant_id, account.id):
        return False
    await uow.challenges.delete_for_email(account.tenant_id, account.email.key)
    await uow.outbox.delete_for_address(account.tenant_id, account.email.key)
    await uow.code_requests.delete_for_address(account.tenant_id, account.email.key)
    await uow.events.add(
        security_event(
            EventType.USER_DELETED, account.tenant_id, now, client, user_id=account.id, by=by
        )
    )
    return True


def _managed(accounts: list[Account]) -> list[ManagedUser]:
    return [ManagedUser(account, list(account.identities)) for account in accounts]


async def _get(uow: UnitOfWork, tenant: Tenant, user_id: UUID) -> Account:
    account = await uow.accounts.get(tenant.id, user_id)
    if account is None:
        raise AccountNotFoundError(str(user_id))
    return account


@attrs.frozen
class AdminServices:
    """What the admin use cases share; built once by the container."""

    uow: UnitOfWorkFactory
    clock: Clock
    hasher: PasswordHasher
    common_passwords: CommonPasswords


@attrs.frozen
class FindUsers:
    tenant: Tenant
    email: Email | None = None  # exact (normalised) address: at most one user
    after: Position | None = None
    limit: int = 50


class ListUsers:
    """A keyset page of the tenant's users, oldest first, or the one with an address."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, query: FindUsers) -> Page[ManagedUser]:
        async with self._s.uow() as uow:
            if query.email is not None:
                found = await uow.accounts.get_by_email(query.tenant.id, query.email.key)
                return Page(_managed([found] if found else []))
            rows = await uow.accounts.list_page(query.tenant.id, query.after, query.limit + 1)
            page = page_of(rows, query.limit, lambda account: (account.created_at, account.id))
            return Page(_managed(page.items), page.next)


@attrs.frozen
class NewUser:
    tenant: Tenant
    email: Email
    password: str | None = attrs.field(default=None, repr=False)
    full_name: str | None = None
    verified: bool = False
    client: ClientInfo = ClientInfo()


class CreateUser:
    """Create an account directly (no code is mailed): ``EmailAlreadyRegisteredError``
    when the address is taken, ``WeakPasswordError`` for a refused password."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, command: NewUser) -> ManagedUser:
        s = self._s
        password_hash = None
        if command.password is not None:
            check_new_password(command.password, s.common_passwords, field="password")
            password_hash = await s.hasher.hash(command.password)
        now = s.clock.now()
        account = Account(
            id=uuid.uuid4(),
            tenant_id=command.tenant.id,
            email=command.email,
            password_hash=password_hash,
            full_name=command.full_name,
            created_at=now,
            updated_at=now,
        )
        if command.verified:
            account.verify_email(now)
        async with s.uow() as uow:
            await uow.accounts.add(account)
            await uow.events.add(
                security_event(
                    EventType.USER_CREATED,
                    account.tenant_id,
                    now,
                    command.client,
                    user_id=account.id,
                    by="admin",
                    verified=account.is_verified,
                )
            )
            await uow.commit()
        return ManagedUser(account, [])


class GetUser:
    """One user of the tenant; ``AccountNotFoundError`` otherwise."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, user_id: UUID) -> ManagedUser:
        async with self._s.uow() as uow:
            (managed,) = _managed([await _get(uow, tenant, user_id)])
        return managed


@attrs.frozen
class UserChanges:
    """What to change; None leaves a field as it is."""

    tenant: Tenant
    user_id: UUID
    full_name: str | None = None
    is_active: bool | None = None
    is_verified: bool | None = None
    client: ClientInfo = ClientInfo()


class UpdateUser:
    """Rename, verify or un-verify, enable or disable; disabling ends every session."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, command: UserChanges) -> ManagedUser:
        async with self._s.uow() as uow:
            account = await _get(uow, command.tenant, command.user_id)
            now = self._s.clock.now()
            before = (account.full_name, account.is_verified, account.is_active)
            if command.full_name is not None:
                account.rename(command.full_name, now)
            if command.is_verified is not None:
                account.set_verified(command.is_verified, now)
            if command.is_active is True and not account.is_active:
                account.enable(now)
            elif command.is_active is False and account.is_active:
                account.disable(now)
            # The account row first: its lock makes a racing sign-in wait, and then
            # find the account disabled (or commit first, and have its session ended).
            await uow.accounts.update(account)
            ended = 0
            if command.is_active is False:
                ended = await uow.sessions.revoke_all_for_account(
                    command.tenant.id, account.id, now, "account_disabled"
                )
            await self._record(uow, command, account, before, ended, now)
            (managed,) = _managed([account])
            await uow.commit()
        return managed

    @staticmethod
    async def _record(
        uow: UnitOfWork,
        command: UserChanges,
        account: Account,
        before: tuple[str | None, bool, bool],
        ended: int,
        now: datetime,
    ) -> None:
        tenant_id, user_id, client = account.tenant_id, account.id, command.client
        changed = [
            name
            for name, old, new in zip(
                ("full_name", "is_verified", "is_active"),
                before,
                (account.full_name, account.is_verified, account.is_active),
                strict=True,
            )
            if old != new
        ]
        fields = sorted(set(changed) - {"is_active"})
        if fields:
            await uow.events.add(
                security_event(
                    EventType.USER_UPDATED, tenant_id, now, client, user_id=user_id, fields=fields
                )
            )
        if "is_active" in changed:
            kind = EventType.USER_ENABLED if account.is_active else EventType.USER_DISABLED
            await uow.events.add(security_event(kind, tenant_id, now, client, user_id=user_id))
        if ended:
            await uow.events.add(
                security_event(
                    EventType.SESSION_REVOKED,
                    tenant_id,
                    now,
                    client,
                    user_id=user_id,
                    reason="account_disabled",
                    sessions_revoked=ended,
                )
            )


class DeleteUser:
    """Erase a user and everything tied to it in one transaction; the address is free again."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, user_id: UUID, client: ClientInfo = NO_CLIENT) -> None:
        async with self._s.uow() as uow:
            account = await _get(uow, tenant, user_id)
            if not await erase_account(uow, account, client, self._s.clock.now(), by="admin"):
                raise AccountNotFoundError(str(user_id))  # a concurrent delete won
            await uow.commit()


class ListUserSessions:
    """The user's active sessions, oldest first."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, user_id: UUID) -> list[Session]:
        async with self._s.uow() as uow:
            account = await _get(uow, tenant, user_id)
            found = await uow.sessions.list_active_for_account(
                tenant.id, account.id, self._s.clock.now()
            )
            browsers = await uow.browser_sessions.session_ids_for_account(tenant.id, account.id)
        return [attrs.evolve(s, kind=BROWSER) if s.id in browsers else s for s in found]


class LogOutUser:
    """End every session of the user at once; returns how many were active."""

    def __init__(self, services: AdminServices) -> None:
        self._s = services

    async def __call__(self, tenant: Tenant, user_id: UUID, client: ClientInfo = NO_CLIENT) -> int:
        async with self._s.uow() as uow:
            account = await _get(uow, tenant, user_id)
            now = self._s.clock.now()
            count = await uow.sessions.revoke_all_for_account(tenant.id, account.id, now, "admin")
            if count:
                await uow.events.add(
                    security_event(
                        EventType.SESSION_REVOKED,
                        tenant.id,
                        now,
                        client,
                        user_id=account.id,
                        reason="admin",
                        sessions_revoked=count,
                    )
                )
            await uow.commit()
        return count
