"""What the ``identity users`` commands do."""

from __future__ import annotations

from identity.application.events import security_event
from identity.application.ports import Clock, UnitOfWorkFactory
from identity.application.tokens import ClientInfo
from identity.domain.accounts import Account
from identity.domain.emails import Email
from identity.domain.errors import AccountNotFoundError, TenantNotFoundError
from identity.domain.events import EventType


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
            was_active = account.is_active
            if active:
                account.enable(now)
            else:
                account.disable(now)
                ended = await uow.sessions.revoke_all_for_account(
                    tenant.id, account.id, now, "account_disabled"
                )
            await uow.accounts.update(account)
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
