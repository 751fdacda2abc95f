"""What the ``identity users`` commands do."""

from __future__ import annotations

from identity.application.ports import Clock, UnitOfWorkFactory
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import AccountNotFoundError, TenantNotFoundError


class UserAdmin:
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
            if active:
                account.enable(now)
            else:
                account.disable(now)
                ended = await uow.sessions.revoke_all_for_account(
                    tenant.id, account.id, now, "account_disabled"
                )
            await uow.accounts.update(account)
            await uow.commit()
        return account, ended
