"""The aal2 rule: with MFA on, sensitive operations need a session that passed it."""

from __future__ import annotations

from uuid import UUID

from identity.application.ports import UnitOfWork
from identity.domain.accounts import Account
from identity.domain.mfa import AAL2, MfaRequiredError


async def require_aal2(uow: UnitOfWork, account: Account, session_id: UUID) -> None:
    """Raise ``MfaRequiredError`` when ``account`` has MFA on and the session is not aal2.

    ``account`` must be read in ``uow``'s transaction. The session row decides,
    not the access token's claim: a session raised to aal2 a moment ago
    (confirmation, step-up) counts at once.
    """
    if not account.mfa_enabled:
        return
    session = await uow.sessions.get(account.tenant_id, session_id)
    if session is None or session.aal != AAL2:
        raise MfaRequiredError("this operation needs a second factor")
